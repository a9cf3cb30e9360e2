package idp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/watashi-id/watashi/idp/keys"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/idp/store/storetest"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// testKEKBytes is the KEK of every test's provider: the signing key
// fixtures are sealed once and shared by all tests, and the dump test
// looks for it.
var testKEKBytes = bytes.Repeat([]byte("test-kek"), 4)

var testKEK = func() *seal.Ring {
	k, err := seal.ParseKEK(testKEKBytes)
	if err != nil {
		panic(err)
	}
	r, err := seal.NewRing(k)
	if err != nil {
		panic(err)
	}
	return r
}()

// certLink is the link name under which the provider knows a certificate.
func certLink(t testing.TB, s *Server, c *x509.Certificate) string {
	t.Helper()
	l, err := s.accounts.CertLink(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A copy of the store reveals nothing readable: a resident proves their
// identity and signs in to an RP that receives every fact, through the
// real flow on a real redis-server; then every key and every value is
// read back as redis-cli would (KEYS *, then GET, SMEMBERS, HGETALL,
// LRANGE, ZRANGE or XRANGE by type) and searched for the facts in every
// form they take (certificate, JSON, ISO date, era date), the two
// certificates (DER, base64, serial, fingerprints), the private signing
// keys and the KEK.
func TestStoreDumpRevealsNothing(t *testing.T) {
	addr := storetest.StartRedis(t)
	kv, err := store.NewRedis(store.RedisOptions{Addrs: []string{addr}, Prefix: "dump:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	o := newConsentOP(t, kv, nil)
	ctx := context.Background()

	facts := jpkisim.Facts{Name: "渡辺\u3000精一郎", Gender: "1", Birthdate: "319750314", Address: "沖縄県那覇市泉崎一丁目2番2号"}
	w := o.pki.wallet(t, facts)
	b := o.proofed(w)
	ar, conf, v := b.request("web", []string{"name", "birthdate", "gender", "address"}, "")
	_, loc := b.consentAll(ar)
	tok := o.tokens(conf, v, b.callback(loc))
	if st, ui := o.userinfo(tok.AccessToken); st != http.StatusOK || ui["name"] != facts.Name || ui["gender"] != "male" || ui["birthdate"] != "1975-03-14" {
		t.Fatalf("userinfo %d %v", st, personal(ui))
	}
	// A second visit signs in with the authentication certificate.
	if rp := o.browser().signIn(w, "web", "", "jws"); rp.Query().Get("code") == "" {
		t.Fatalf("sign-in: %s", rp.Redacted())
	}
	acct := b.sessionAccount()

	secrets := map[string][]byte{}
	text := func(what string, vs ...string) {
		for i, v := range vs {
			secrets[fmt.Sprintf("%s #%d %q", what, i, v)] = []byte(v)
		}
	}
	text("name", facts.Name, "渡辺", "精一郎")
	text("address", facts.Address, "那覇市", "泉崎一丁目")
	text("birth date", "1975-03-14", "19750314", "319750314", "1975/03/14", "1975年3月14日", "昭和50年")
	// The claim names themselves (in consents and requests) are no secret.
	text("gender", `"male"`, `"gender_code"`)
	serials := map[string]string{}
	for kind, c := range map[string]*x509.Certificate{"signature certificate": w.SigCert, "authentication certificate": w.AuthCert} {
		secrets[kind+" DER"] = c.Raw
		secrets[kind+" DER, middle"] = c.Raw[len(c.Raw)/2 : len(c.Raw)/2+32]
		// From the end: the start of the DER names the issuer, like the
		// CA's own certificate.
		b64, b64url := base64.StdEncoding.EncodeToString(c.Raw), base64.RawURLEncoding.EncodeToString(c.Raw)
		text(kind+" base64", b64[len(b64)-120:len(b64)-60], b64url[len(b64url)-120:len(b64url)-60])
		sum := sha256.Sum256(c.Raw)
		secrets[kind+" fingerprint"] = sum[:]
		text(kind+" fingerprint", hex.EncodeToString(sum[:]), strings.ToUpper(hex.EncodeToString(sum[:])),
			base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:]))
		serials[c.SerialNumber.String()] += kind + " serial "
	}
	m, err := keys.New(kv, keys.Options{KEK: testKEK})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range keys.Algs {
		k, err := m.Current(ctx, alg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Key())
		if err != nil {
			t.Fatal(err)
		}
		secrets[string(alg)+" PKCS#8"] = der
		text(string(alg)+" PKCS#8 base64", base64.StdEncoding.EncodeToString(der)[40:100])
		switch p := k.Key().(type) {
		case *ecdsa.PrivateKey:
			d, _ := p.Bytes()
			secrets[string(alg)+" private scalar"] = d
		case *rsa.PrivateKey:
			secrets[string(alg)+" prime"] = p.Primes[0].Bytes()
			secrets[string(alg)+" private exponent"] = p.D.Bytes()[:64]
		}
	}
	secrets["KEK"] = testKEKBytes
	text("KEK hex", hex.EncodeToString(testKEKBytes))

	dump := dumpRedis(t, addr)
	// The dump is the store: the account, its data key, the links, the
	// signing keys and the flow's records are all in it.
	for _, want := range []string{"dump:acct:" + acct, "dump:acctkey:" + acct, "dump:linkkey", "dump:link:" + certLink(t, o.s, w.AuthCert),
		"dump:key:" + currentKID(t, o.testOP, "ES256")} {
		if _, ok := dump[want]; !ok {
			t.Fatalf("the dump lacks %s (%d keys)", want, len(dump))
		}
	}
	if n := leaks(dump, secrets, serials); len(n) > 0 {
		t.Errorf("the dump reveals:\n%s", strings.Join(n, "\n"))
	}

	// The search finds what it looks for: the account in plaintext JSON
	// with its certificate, as it was stored before, is caught.
	a, err := o.s.accounts.Get(ctx, acct)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(map[string]any{"account": a, "cert": w.SigCert.Raw})
	found := leaks(map[string][]byte{"control": plain}, secrets, serials)
	for _, want := range []string{"name", "address", "birth date", "gender", "signature certificate serial", "signature certificate base64"} {
		if !strings.Contains(strings.Join(found, "\n"), want) {
			t.Errorf("the search misses a plaintext %s: %v", want, found)
		}
	}
	if found := leaks(map[string][]byte{"control": w.AuthCert.Raw}, secrets, serials); len(found) == 0 {
		t.Error("the search misses a certificate's DER")
	}
}

// dumpRedis reads every key and value of a redis-server, as redis-cli
// would, with a client of its own.
func dumpRedis(t *testing.T, addr string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	names, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range names {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		switch typ {
		case "string":
			v, err := c.Get(ctx, k).Result()
			if err == nil {
				vals = []string{v}
			}
		case "set":
			vals, err = c.SMembers(ctx, k).Result()
		case "hash":
			var h map[string]string
			h, err = c.HGetAll(ctx, k).Result()
			for f, v := range h {
				vals = append(vals, f, v)
			}
		case "list":
			vals, err = c.LRange(ctx, k, 0, -1).Result()
		case "zset":
			vals, err = c.ZRange(ctx, k, 0, -1).Result()
		case "stream":
			var xs []redis.XMessage
			xs, err = c.XRange(ctx, k, "-", "+").Result()
			for _, x := range xs {
				for f, v := range x.Values {
					vals = append(vals, f, fmt.Sprint(v))
				}
			}
		case "none":
			continue // expired between KEYS and TYPE
		default:
			t.Fatalf("%s: unexpected type %s", k, typ)
		}
		if err != nil && err != redis.Nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = []byte(strings.Join(vals, "\x00"))
	}
	return out
}

// reSerialToken finds numbers standing alone.
var reSerialToken = regexp.MustCompile(`[0-9]+`)

// leaks lists "key: what" for every secret found in a key or its value.
func leaks(dump, secrets map[string][]byte, serials map[string]string) []string {
	var out []string
	for k, v := range dump {
		all := append([]byte(k+"\x00"), v...)
		for what, s := range secrets {
			if bytes.Contains(all, s) {
				out = append(out, k+": "+what)
			}
		}
		for _, n := range reSerialToken.FindAll(all, -1) {
			if what, ok := serials[string(n)]; ok {
				out = append(out, k+": "+what)
			}
		}
	}
	return out
}

// The provider does not start without a KEK, except under Dev on a
// store that forgets everything anyway.
func TestNewNeedsKEK(t *testing.T) {
	fixtures(t)
	redisKV := redisKV(t)
	for _, tc := range []struct {
		name string
		dev  bool
		kv   store.KV
		ok   bool
	}{
		{"production", false, redisKV, false},
		{"dev on redis", true, redisKV, false},
		{"dev on memory", true, store.NewMemory(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(tc.kv, "https://op.example")
			o.Dev, o.KEK = tc.dev, nil
			_, err := New(context.Background(), o)
			if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "Options.KEK must be set")) {
				t.Fatalf("New: %v", err)
			}
		})
	}
}

package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// catalogue builds the inputs of one catalogue row from the openssl
// fixture, in a row-private folder.
type catalogue struct {
	t   *testing.T
	fx  fixture
	dir string
}

func (c *catalogue) file(name string, data []byte) string { return writeFile(c.t, c.dir, name, data) }

// der returns a certificate's DER bytes, as openssl writes them.
func (c *catalogue) der(cert string) []byte {
	return ossl(c.t, "", nil, "x509", "-in", c.fx.p(cert), "-outform", "DER")
}

// cms signs data.txt (or content) with `openssl cms -sign`. Extra args go
// to openssl; -nodetach is the default unless "detached" is the first.
func (c *catalogue) cms(name, cert, key string, content []byte, args ...string) string {
	in := c.fx.p("data.txt")
	if content != nil {
		in = c.file(name+".in", content)
	}
	out := filepath.Join(c.dir, name)
	base := []string{"cms", "-sign", "-binary", "-in", in, "-signer", c.fx.p(cert), "-inkey", c.fx.p(key), "-outform", "DER", "-out", out}
	if len(args) > 0 && args[0] == "detached" {
		args = args[1:]
	} else {
		base = append(base, "-nodetach")
	}
	if !contains(args, "-md") {
		base = append(base, "-md", "sha256")
	}
	ossl(c.t, "", nil, append(base, args...)...)
	return out
}

// rawSig signs data.txt with `openssl dgst`.
func (c *catalogue) rawSig(name, key, digest string) string {
	out := filepath.Join(c.dir, name)
	ossl(c.t, "", nil, "dgst", "-"+digest, "-sign", c.fx.p(key), "-out", out, c.fx.p("data.txt"))
	return out
}

var b64url = base64.RawURLEncoding

// jws builds a compact JWS by hand: header from hdr with x5c from the
// named certificates, payload data.txt, and the signature from sign
// (given the signing input). openssl makes RS256 signatures.
func (c *catalogue) jws(name string, hdr map[string]any, x5c []string, sign func(input []byte) []byte) string {
	if x5c != nil {
		var chain []string
		for _, cert := range x5c {
			chain = append(chain, base64.StdEncoding.EncodeToString(c.der(cert)))
		}
		hdr["x5c"] = chain
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		c.t.Fatal(err)
	}
	input := b64url.EncodeToString(h) + "." + b64url.EncodeToString(readFile(c.t, c.fx.p("data.txt")))
	return c.file(name, []byte(input+"."+b64url.EncodeToString(sign([]byte(input)))))
}

// rs256 signs with openssl dgst over the JWS signing input.
func (c *catalogue) rs256(key string) func([]byte) []byte {
	return func(input []byte) []byte {
		return ossl(c.t, "", input, "dgst", "-sha256", "-sign", c.fx.p(key))
	}
}

// flipLast flips one bit in the last byte of a file's copy: in a DER
// SignedData the last bytes are the signer's signature value.
func (c *catalogue) flipLast(name, src string) string {
	b := append([]byte{}, readFile(c.t, src)...)
	b[len(b)-1] ^= 0x01
	return c.file(name, b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// startOCSP runs `openssl ocsp` as a responder over the fixture's CA
// database on a kernel-chosen port and returns its URL. The process is
// killed at cleanup.
func startOCSP(t *testing.T, fx fixture) string {
	t.Helper()
	cmd := exec.Command(opensslPath(t), "ocsp", "-index", "index.txt", "-port", "0",
		"-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-nmin", "60", "-ignore_err")
	cmd.Dir = fx.dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// "ACCEPT [::]:43787 PID=10977" once it listens.
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "ACCEPT ") {
			continue
		}
		addr := strings.Fields(line)[1]
		port := addr[strings.LastIndexByte(addr, ':')+1:]
		go func() { // keep draining so the responder never blocks on stdout
			for sc.Scan() {
			}
		}()
		return "http://127.0.0.1:" + port + "/"
	}
	t.Fatalf("openssl ocsp did not start: %s", stderr.String())
	return ""
}

// deadURL is an http URL on a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

// TestCatalogue runs every bad input we know of, and the good ones beside
// them, through `watashi pki verify` and pins exit status and reason.
func TestCatalogue(t *testing.T) {
	fx := sharedFixture(t)
	ocspURL := startOCSP(t, fx)
	dead := deadURL(t)
	ca, data, crl := fx.p("ca.pem"), fx.p("data.txt"), fx.p("crl.pem")
	verify := func(extra ...string) []string {
		return append([]string{"pki", "verify", "--anchor", ca, "--data", data}, extra...)
	}
	future := time.Now().AddDate(0, 2, 0).UTC().Format(time.RFC3339) // past the CRL's nextUpdate (30 days)

	type row struct {
		name   string
		args   func(c *catalogue) []string
		code   int
		reason string
		check  func(t *testing.T, m map[string]any)
	}
	wantKind := func(kind, format string) func(*testing.T, map[string]any) {
		return func(t *testing.T, m map[string]any) {
			if m["kind"] != kind || m["format"] != format {
				t.Errorf("kind %v format %v, want %s %s", m["kind"], m["format"], kind, format)
			}
			cert, _ := m["certificate"].(map[string]any)
			if cert == nil || cert["kind"] != kind {
				t.Errorf("certificate %v", cert)
			}
			attrs, hasAttrs := m["attributes"].(map[string]any)
			if kind == "signature" && (!hasAttrs || attrs["birthdate"] != "1980-12-31" || attrs["given_name"] != "太郎") {
				t.Errorf("attributes %v", m["attributes"])
			}
			if kind == "authentication" && m["attributes"] != nil {
				t.Errorf("authentication result has attributes %v", m["attributes"])
			}
			if chain, _ := m["chain"].([]any); len(chain) != 2 {
				t.Errorf("chain %v, want leaf and anchor", m["chain"])
			}
		}
	}
	wantRevocation := func(status, sourcePrefix string, softFail bool) func(*testing.T, map[string]any) {
		return func(t *testing.T, m map[string]any) {
			rev, _ := m["revocation"].(map[string]any)
			if rev == nil {
				t.Fatalf("no revocation object")
			}
			if rev["status"] != status {
				t.Errorf("revocation status %v, want %s (%v)", rev["status"], status, rev)
			}
			if src, _ := rev["source"].(string); !strings.HasPrefix(src, sourcePrefix) {
				t.Errorf("revocation source %q, want prefix %q", src, sourcePrefix)
			}
			if sf, _ := rev["soft_fail"].(bool); sf != softFail {
				t.Errorf("soft_fail %v, want %v", rev["soft_fail"], softFail)
			}
		}
	}
	hasCertificate := func(cn string) func(*testing.T, map[string]any) {
		return func(t *testing.T, m map[string]any) {
			cert, _ := m["certificate"].(map[string]any)
			if cert == nil || !strings.Contains(fmt.Sprint(cert["subject"]), "CN="+cn) {
				t.Errorf("certificate %v, want CN=%s", cert, cn)
			}
		}
	}

	rows := []row{
		// ---- accepted -------------------------------------------------------
		{name: "JWS signature cert, openssl-made", code: 0,
			args:  func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--crl", crl) },
			check: all(wantKind("signature", "jws"), wantRevocation("good", "crl:", false))},
		{name: "JWS authentication cert, openssl-made", code: 0,
			args:  func(c *catalogue) []string { return verify("--jws", fx.p("auth.jws"), "--crl", crl) },
			check: wantKind("authentication", "jws")},
		{name: "JWS with the CA in x5c", code: 0,
			args: func(c *catalogue) []string {
				return verify("--jws", c.jws("x5c-ca.jws", map[string]any{"alg": "RS256"}, []string{"sign.pem", "ca.pem"}, c.rs256("sign.key")), "--crl", crl)
			},
			check: wantKind("signature", "jws")},
		{name: "CMS attached, signature cert", code: 0,
			args:  func(c *catalogue) []string { return verify("--cms", fx.p("sign-attached.p7s"), "--crl", crl) },
			check: wantKind("signature", "cms")},
		{name: "CMS detached, signature cert", code: 0,
			args:  func(c *catalogue) []string { return verify("--cms", fx.p("sign-detached.p7s"), "--crl", crl) },
			check: wantKind("signature", "cms")},
		{name: "CMS -noattr, signature cert", code: 0,
			args:  func(c *catalogue) []string { return verify("--cms", fx.p("sign-noattr.p7s"), "--crl", crl) },
			check: wantKind("signature", "cms")},
		{name: "CMS attached, authentication cert", code: 0,
			args:  func(c *catalogue) []string { return verify("--cms", fx.p("auth-attached.p7s"), "--crl", crl) },
			check: wantKind("authentication", "cms")},
		{name: "CMS detached, authentication cert", code: 0,
			args:  func(c *catalogue) []string { return verify("--cms", fx.p("auth-detached.p7s"), "--crl", crl) },
			check: wantKind("authentication", "cms")},
		{name: "CMS as PEM", code: 0,
			args: func(c *catalogue) []string {
				pem := ossl(t, "", nil, "cms", "-cmsout", "-in", fx.p("sign-attached.p7s"), "-inform", "DER", "-outform", "PEM")
				return verify("--cms", c.file("sign.p7s.pem", pem), "--crl", crl)
			},
			check: wantKind("signature", "cms")},
		{name: "raw binary, signature cert", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("sign.sig"), "--cert", fx.p("sign.pem"), "--crl", crl)
			},
			check: wantKind("signature", "raw")},
		{name: "raw binary, authentication cert", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("auth.sig"), "--cert", fx.p("auth.pem"), "--crl", crl)
			},
			check: wantKind("authentication", "raw")},
		{name: "raw base64 from openssl base64 (wrapped lines)", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("sign.sig.b64"), "--cert", fx.p("sign.pem"), "--crl", crl)
			}},
		{name: "raw base64url unpadded, DER certificate", code: 0,
			args: func(c *catalogue) []string {
				sig := c.file("sig.b64u", []byte(b64url.EncodeToString(readFile(t, fx.p("sign.sig")))+"\n"))
				return verify("--sig", sig, "--cert", c.file("sign.der", c.der("sign.pem")), "--crl", crl)
			}},
		{name: "raw SHA-384 with --hash sha384", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", c.rawSig("s384.sig", "sign.key", "sha384"), "--cert", fx.p("sign.pem"), "--hash", "sha384", "--crl", crl)
			}},
		{name: "CRL as DER", code: 0,
			args:  func(c *catalogue) []string { return verify("--jws", fx.p("auth.jws"), "--crl", fx.p("crl.der")) },
			check: wantRevocation("good", "crl:", false)},
		{name: "OCSP good from openssl ocsp", code: 0,
			args:  func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--ocsp-url", ocspURL) },
			check: wantRevocation("good", "ocsp:", false)},
		{name: "revocation off", code: 0,
			args:  func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--revocation", "off") },
			check: wantRevocation("skipped", "", false)},
		{name: "SHA-1 CMS accepted with --allow-sha1", code: 0,
			args: func(c *catalogue) []string {
				return verify("--cms", fx.p("sign-sha1.p7s"), "--allow-sha1", "--crl", crl)
			}},
		{name: "wrong policy OID accepted with --policy-oid", code: 0,
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("wp.p7s", "wrongpolicy.pem", "sign.key", nil), "--policy-oid", "1.3.6.1.4.1.55555.2.1", "--revocation", "off")
			}},

		{name: "two anchor generations, each CRL paired by key", code: 0,
			args: func(c *catalogue) []string {
				return []string{"pki", "verify", "--anchor", fx.p("ca2.pem"), "--anchor", ca, "--data", data,
					"--cms", c.cms("rogue.p7s", "rogue.pem", "sign.key", nil), "--crl", crl, "--crl", fx.p("crl-otherkey.pem")}
			},
			check: wantRevocation("good", "crl:"+fx.p("crl-otherkey.pem"), false)},
		{name: "--at inside every validity window", code: 0,
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--crl", crl, "--at", time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
			}},

		// ---- time -----------------------------------------------------------
		{name: "expired certificate", code: 1, reason: "expired",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("exp.p7s", "expired.pem", "sign.key", nil), "--crl", crl)
			},
			check: hasCertificate("OPENSSL-SIGN-EXPIRED")},
		{name: "not yet valid certificate", code: 1, reason: "not_yet_valid",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("nyv.p7s", "notyet.pem", "sign.key", nil), "--crl", crl)
			}},

		// ---- trust ----------------------------------------------------------
		{name: "unknown CA", code: 1, reason: "untrusted",
			args: func(c *catalogue) []string {
				return []string{"pki", "verify", "--anchor", fx.p("ca2.pem"), "--data", data, "--jws", fx.p("sign.jws"), "--crl", crl}
			},
			check: hasCertificate("OPENSSL-SIGN-0001")},
		{name: "same CA name, another key", code: 1, reason: "untrusted",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("rogue.p7s", "rogue.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "self-signed leaf", code: 1, reason: "untrusted",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("self.p7s", "selfsigned.pem", "other.key", nil), "--crl", crl)
			}},
		{name: "x5c chain to an untrusted root", code: 1, reason: "untrusted",
			args: func(c *catalogue) []string {
				return verify("--jws", c.jws("rogue.jws", map[string]any{"alg": "RS256"}, []string{"rogue.pem", "ca2.pem"}, c.rs256("sign.key")), "--crl", crl)
			}},

		// ---- profile --------------------------------------------------------
		{name: "wrong key usage", code: 1, reason: "key_usage",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("wku.p7s", "wrongku.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "missing key usage", code: 1, reason: "key_usage",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("noku.p7s", "noku.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "CA certificate as leaf", code: 1, reason: "key_usage",
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("sign.sig"), "--cert", fx.p("caleaf.pem"), "--crl", crl)
			}},
		{name: "wrong policy OID", code: 1, reason: "key_usage",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("wp.p7s", "wrongpolicy.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "policy OID given for the other kind", code: 1, reason: "key_usage",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("wp.p7s", "wrongpolicy.pem", "sign.key", nil), "--policy-oid", "auth:1.3.6.1.4.1.55555.2.1", "--crl", crl)
			}},
		{name: "unknown critical extension", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("crit.p7s", "critext.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "RSA-1024 leaf", code: 1, reason: "weak_key",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("weak.p7s", "weak.pem", "weak.key", nil), "--crl", crl)
			}},
		{name: "RSA-1024 leaf, raw", code: 1, reason: "weak_key",
			args: func(c *catalogue) []string {
				return verify("--sig", c.rawSig("weak.sig", "weak.key", "sha256"), "--cert", fx.p("weak.pem"), "--crl", crl)
			}},
		{name: "malformed birth date", code: 1, reason: "attributes",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("bb.p7s", "badbirth.pem", "sign.key", nil), "--crl", crl)
			}},
		{name: "malformed gender", code: 1, reason: "attributes",
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("sign.sig"), "--cert", fx.p("badgender.pem"), "--crl", crl)
			}},
		{name: "signature cert without SAN facts", code: 1, reason: "attributes",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("nf.p7s", "nofacts.pem", "sign.key", nil), "--crl", crl)
			}},

		// ---- revocation -----------------------------------------------------
		{name: "revoked by CRL", code: 1, reason: "revoked",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("rev.p7s", "revoked.pem", "sign.key", nil), "--crl", crl)
			},
			check: all(wantRevocation("revoked", "crl:", false), hasCertificate("OPENSSL-SIGN-REVOKED"))},
		{name: "revoked by OCSP", code: 1, reason: "revoked",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("rev.p7s", "revoked.pem", "sign.key", nil), "--ocsp-url", ocspURL)
			},
			check: wantRevocation("revoked", "ocsp:", false)},
		{name: "revoked wins in prefer mode", code: 1, reason: "revoked",
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("sign.sig"), "--cert", fx.p("revoked.pem"), "--crl", crl, "--revocation", "prefer")
			}},
		{name: "OCSP unknown serial, require", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("auth.sig"), "--cert", fx.p("unlisted.pem"), "--ocsp-url", ocspURL)
			}},
		{name: "OCSP unknown serial, prefer", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("auth.sig"), "--cert", fx.p("unlisted.pem"), "--ocsp-url", ocspURL, "--revocation", "prefer")
			},
			check: wantRevocation("unknown", "", true)},
		{name: "OCSP responder down, require", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--ocsp-url", dead) }},
		{name: "OCSP responder down, prefer", code: 0,
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--ocsp-url", dead, "--revocation", "prefer")
			},
			check: wantRevocation("unknown", "", true)},
		{name: "CRL of the other anchor generation only", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string {
				return []string{"pki", "verify", "--anchor", fx.p("ca2.pem"), "--anchor", ca, "--data", data,
					"--cms", c.cms("rogue.p7s", "rogue.pem", "sign.key", nil), "--crl", crl}
			}},
		{name: "stale CRL", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--crl", fx.p("crl-stale.pem")) }},
		{name: "CRL past nextUpdate at --at", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws"), "--crl", crl, "--at", future) }},
		{name: "CRL signed by another key", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--crl", fx.p("crl-otherkey.pem"))
			}},
		{name: "CRL with the CA's name and no AKI, signed by another key", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--crl", fx.p("crl-otherkey-noaki.pem"))
			},
			check: func(t *testing.T, m map[string]any) {
				if !strings.Contains(fmt.Sprint(m["error"]), "signature") {
					t.Errorf("error does not name the CRL signature: %v", m["error"])
				}
			}},
		{name: "forged CRL does not hide a good one", code: 0,
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--crl", fx.p("crl-otherkey-noaki.pem"), "--crl", crl)
			}},
		{name: "CRL file unreadable at check time", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string {
				return verify("--jws", fx.p("sign.jws"), "--crl", filepath.Join(c.dir, "no-such.crl"))
			}},
		{name: "no revocation source in require mode", code: 1, reason: "revocation_unknown",
			args: func(c *catalogue) []string { return verify("--jws", fx.p("sign.jws")) }},

		// ---- signature ------------------------------------------------------
		{name: "tampered data bytes", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				d := append([]byte{}, readFile(t, data)...)
				d[len(d)-1] ^= 0x01
				return []string{"pki", "verify", "--anchor", ca, "--data", c.file("data2", d), "--jws", fx.p("sign.jws"), "--crl", crl}
			}},
		{name: "tampered data bytes, raw", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return []string{"pki", "verify", "--anchor", ca, "--data", c.file("data2", []byte("another challenge")), "--sig", fx.p("sign.sig"), "--cert", fx.p("sign.pem"), "--crl", crl}
			}},
		{name: "tampered CMS signature value", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return verify("--cms", c.flipLast("t.p7s", fx.p("sign-attached.p7s")), "--crl", crl)
			}},
		{name: "tampered JWS payload", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				parts := strings.Split(string(readFile(t, fx.p("sign.jws"))), ".")
				parts[1] = b64url.EncodeToString([]byte("attacker's challenge"))
				return []string{"pki", "verify", "--anchor", ca, "--data", c.file("d", []byte("attacker's challenge")),
					"--jws", c.file("t.jws", []byte(strings.Join(parts, "."))), "--crl", crl}
			}},
		{name: "raw signature by another key", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return verify("--sig", c.rawSig("o.sig", "other.key", "sha256"), "--cert", fx.p("sign.pem"), "--crl", crl)
			}},
		{name: "raw signature by the other card key", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return verify("--sig", fx.p("auth.sig"), "--cert", fx.p("sign.pem"), "--crl", crl)
			}},
		{name: "JWS signed by another key than x5c's", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return verify("--jws", c.jws("o.jws", map[string]any{"alg": "RS256"}, []string{"sign.pem"}, c.rs256("other.key")), "--crl", crl)
			}},
		{name: "detached CMS with wrong content", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return []string{"pki", "verify", "--anchor", ca, "--data", c.file("d", []byte("not what was signed")), "--cms", fx.p("sign-detached.p7s"), "--crl", crl}
			}},
		{name: "detached CMS -noattr with wrong content", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				p := c.cms("na.p7s", "sign.pem", "sign.key", nil, "detached", "-noattr")
				return []string{"pki", "verify", "--anchor", ca, "--data", c.file("d", []byte("not what was signed")), "--cms", p, "--crl", crl}
			}},
		{name: "attached CMS content differs from --data", code: 1, reason: "bad_signature",
			args: func(c *catalogue) []string {
				return verify("--cms", c.cms("other.p7s", "sign.pem", "sign.key", []byte("a different challenge")), "--crl", crl)
			}},

		// ---- algorithms -----------------------------------------------------
		{name: "JWS alg none", code: 1, reason: "weak_algorithm",
			args: func(c *catalogue) []string {
				return verify("--jws", c.jws("none.jws", map[string]any{"alg": "none"}, []string{"sign.pem"}, func([]byte) []byte { return nil }), "--crl", crl)
			}},
		{name: "JWS HS256 keyed with the certificate (algorithm confusion)", code: 1, reason: "weak_algorithm",
			args: func(c *catalogue) []string {
				key := readFile(t, fx.p("sign.pem"))
				return verify("--jws", c.jws("hs.jws", map[string]any{"alg": "HS256"}, []string{"sign.pem"}, func(in []byte) []byte {
					m := hmac.New(sha256.New, key)
					m.Write(in)
					return m.Sum(nil)
				}), "--crl", crl)
			}},
		{name: "SHA-1 CMS refused", code: 1, reason: "weak_algorithm",
			args: func(c *catalogue) []string { return verify("--cms", fx.p("sign-sha1.p7s"), "--crl", crl) }},
		{name: "raw SHA-1 refused", code: 1, reason: "weak_algorithm",
			args: func(c *catalogue) []string {
				return verify("--sig", c.rawSig("s1.sig", "sign.key", "sha1"), "--cert", fx.p("sign.pem"), "--hash", "sha1", "--crl", crl)
			}},
		{name: "raw SHA-1 accepted with --allow-sha1", code: 0,
			args: func(c *catalogue) []string {
				return verify("--sig", c.rawSig("s1.sig", "sign.key", "sha1"), "--cert", fx.p("sign.pem"), "--hash", "sha1", "--allow-sha1", "--crl", crl)
			}},

		// ---- malformed envelopes --------------------------------------------
		{name: "CMS with two signers", code: 1, reason: "malformed",
			args: func(c *catalogue) []string { return verify("--cms", fx.p("two-signers.p7s"), "--crl", crl) }},
		{name: "truncated CMS DER", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				b := readFile(t, fx.p("sign-attached.p7s"))
				return verify("--cms", c.file("tr.p7s", b[:len(b)*2/3]), "--crl", crl)
			}},
		{name: "empty CMS", code: 1, reason: "malformed",
			args: func(c *catalogue) []string { return verify("--cms", c.file("e.p7s", nil), "--crl", crl) }},
		{name: "JWS given as CMS", code: 1, reason: "malformed",
			args: func(c *catalogue) []string { return verify("--cms", fx.p("sign.jws"), "--crl", crl) }},
		{name: "truncated certificate DER, raw", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				d := c.der("sign.pem")
				return verify("--sig", fx.p("sign.sig"), "--cert", c.file("tr.der", d[:len(d)-10]), "--crl", crl)
			}},
		{name: "raw signature of the wrong length", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				return verify("--sig", c.file("short.sig", readFile(t, fx.p("sign.sig"))[:100]), "--cert", fx.p("sign.pem"), "--crl", crl)
			}},
		{name: "JWS with bad base64", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				parts := strings.Split(string(readFile(t, fx.p("sign.jws"))), ".")
				parts[0] = "%%%" + parts[0][3:]
				return verify("--jws", c.file("b.jws", []byte(strings.Join(parts, "."))), "--crl", crl)
			}},
		{name: "JWS with two segments", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				parts := strings.Split(string(readFile(t, fx.p("sign.jws"))), ".")
				return verify("--jws", c.file("two.jws", []byte(parts[0]+"."+parts[1])), "--crl", crl)
			}},
		{name: "JWS without x5c", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				return verify("--jws", c.jws("nox5c.jws", map[string]any{"alg": "RS256"}, nil, c.rs256("sign.key")), "--crl", crl)
			}},
		{name: "oversized JWS file (over 1 MiB)", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				return verify("--jws", c.file("big.jws", bytes.Repeat([]byte("A"), maxEnvelopeFileBytes+1)), "--crl", crl)
			}},
		{name: "oversized JWS for the policy (64 KiB)", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				pad := strings.Repeat("x", 70<<10)
				return verify("--jws", c.jws("pad.jws", map[string]any{"alg": "RS256", "pad": pad}, []string{"sign.pem"}, c.rs256("sign.key")), "--crl", crl)
			}},
		{name: "oversized CMS file", code: 1, reason: "malformed",
			args: func(c *catalogue) []string {
				return verify("--cms", c.file("big.p7s", bytes.Repeat([]byte{0x30}, maxEnvelopeFileBytes+1)), "--crl", crl)
			}},
	}
	if len(rows) < 30 {
		t.Fatalf("catalogue has %d rows, want at least 30", len(rows))
	}
	names := map[string]bool{}
	for _, r := range rows {
		if names[r.name] {
			t.Fatalf("duplicate row %q", r.name)
		}
		names[r.name] = true
		t.Run(r.name, func(t *testing.T) {
			c := &catalogue{t: t, fx: fx, dir: t.TempDir()}
			res := runCLI(t, r.args(c)...)
			m := res.object(t)
			if res.code != r.code {
				t.Fatalf("exit %d, want %d\n%s", res.code, r.code, res)
			}
			if r.code == 0 {
				if m["valid"] != true || m["reason"] != nil || m["error"] != nil {
					t.Errorf("accepted but %v", m)
				}
			} else {
				if m["valid"] != false {
					t.Errorf("valid %v", m["valid"])
				}
				if m["reason"] != r.reason {
					t.Errorf("reason %v, want %s; error: %v", m["reason"], r.reason, m["error"])
				}
				if e, _ := m["error"].(string); e == "" {
					t.Error("no error detail")
				}
				if e := fmt.Sprint(m["error"]); strings.Contains(e, "山田") || strings.Contains(e, "19801231") || strings.Contains(e, "霞が関") {
					t.Errorf("personal data in the error detail: %s", e)
				}
			}
			if r.check != nil {
				r.check(t, m)
			}
		})
	}
}

func all(checks ...func(*testing.T, map[string]any)) func(*testing.T, map[string]any) {
	return func(t *testing.T, m map[string]any) {
		for _, c := range checks {
			c(t, m)
		}
	}
}

// TestCatalogueRevokeAtTestTime revokes with `openssl ca -revoke` and
// publishes with `openssl ca -gencrl` on a copy of the CA database, so the
// CRL path is exercised on a CRL made after the fact, as an operator would.
func TestCatalogueRevokeAtTestTime(t *testing.T) {
	fx := sharedFixture(t)
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-R", fx.dir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	own := fixture{dir: dir}
	args := []string{"pki", "verify", "--anchor", own.p("ca.pem"), "--data", own.p("data.txt"),
		"--sig", own.p("auth.sig"), "--cert", own.p("auth.pem"), "--crl", own.p("fresh.crl")}

	ossl(t, dir, nil, "ca", "-config", "openssl.cnf", "-gencrl", "-out", "fresh.crl")
	if r := runCLI(t, args...); r.code != 0 {
		t.Fatalf("before revocation: %s", r)
	}
	ossl(t, dir, nil, "ca", "-config", "openssl.cnf", "-revoke", "auth.pem", "-crl_reason", "superseded")
	ossl(t, dir, nil, "ca", "-config", "openssl.cnf", "-gencrl", "-out", "fresh.crl")
	r := runCLI(t, args...)
	m := r.object(t)
	if r.code != 1 || m["reason"] != "revoked" {
		t.Fatalf("after revocation: %s", r)
	}
	if rev, _ := m["revocation"].(map[string]any); rev == nil || rev["status"] != "revoked" {
		t.Errorf("revocation %v", m["revocation"])
	}
	// The same CRL through the binary, as a shell script would run it.
	if r := execCLI(t, args...); r.code != 1 {
		t.Errorf("binary: %s", r)
	}
	_ = os.Remove(own.p("fresh.crl"))
}

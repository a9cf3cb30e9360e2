package pkibridge

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// The JWS header is read in one token walk. The reference below is the
// straightforward form it replaced (decode every member to a RawMessage,
// then json.Unmarshal the ones we use); FuzzJWSHeaderDifferential holds the
// walk to the same verdicts on any input.

func refJWSHeaderFields(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not JSON")
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("not JSON")
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("duplicate member %q", key)
		}
		if len(fields) >= jwsMaxHeaderFields {
			return nil, fmt.Errorf("more than %d members", jwsMaxHeaderFields)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("not JSON")
		}
		fields[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("not JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return fields, nil
}

func refJWSAlg(hdr map[string]json.RawMessage) (string, error) {
	raw, ok := hdr["alg"]
	if !ok {
		return "", Fail(ReasonMalformed, "JWS header has no alg")
	}
	var alg string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &alg) != nil {
		return "", Fail(ReasonMalformed, "JWS alg is not a string")
	}
	if jwsAlgs[alg] {
		return alg, nil
	}
	switch {
	case strings.EqualFold(alg, "none"):
		return "", Fail(ReasonWeakAlgorithm, "JWS alg %q: unsigned tokens are never accepted", envQuote(alg))
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return "", Fail(ReasonWeakAlgorithm, "JWS alg %q: HMAC is never accepted, a certificate holds no shared secret", envQuote(alg))
	}
	return "", Fail(ReasonWeakAlgorithm, "JWS alg %q not accepted: use RS256, PS256 or ES256", envQuote(alg))
}

func refJWSCheckHeader(hdr map[string]json.RawMessage) error {
	for _, name := range []string{"jwk", "jku", "x5u"} {
		if _, ok := hdr[name]; ok {
			return Fail(ReasonMalformed, "JWS header %q not accepted: the key comes only from x5c", name)
		}
	}
	if _, ok := hdr["crit"]; ok {
		return Fail(ReasonMalformed, "JWS crit header not accepted: no extensions are understood")
	}
	if raw, ok := hdr["b64"]; ok && string(raw) != "true" {
		return Fail(ReasonMalformed, "JWS with an unencoded payload (b64) not accepted")
	}
	for _, name := range []string{"enc", "zip"} {
		if _, ok := hdr[name]; ok {
			return Fail(ReasonMalformed, "JWS header %q not accepted: encrypted or compressed content", name)
		}
	}
	return nil
}

func refJWSX5CStrings(hdr map[string]json.RawMessage) ([]string, error) {
	raw, ok := hdr["x5c"]
	if !ok {
		return nil, Fail(ReasonMalformed, "JWS header has no x5c: the signing certificate is required")
	}
	var x5c []string
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &x5c) != nil {
		return nil, Fail(ReasonMalformed, "JWS x5c is not an array of strings")
	}
	if len(x5c) == 0 {
		return nil, Fail(ReasonMalformed, "JWS x5c is empty")
	}
	if len(x5c) > jwsMaxChain {
		return nil, Fail(ReasonMalformed, "JWS x5c has %d certificates, at most %d accepted", len(x5c), jwsMaxChain)
	}
	return x5c, nil
}

func refJWSCheckThumbprints(hdr map[string]json.RawMessage, leaf *x509.Certificate) error {
	for _, th := range []struct {
		name string
		sum  func([]byte) []byte
	}{
		{"x5t", func(b []byte) []byte { s := sha1.Sum(b); return s[:] }},
		{"x5t#S256", func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
	} {
		raw, ok := hdr[th.name]
		if !ok {
			continue
		}
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return Fail(ReasonMalformed, "JWS %s is not a string", th.name)
		}
		want, err := jwsDecodeSegment([]byte(s))
		if err != nil {
			return Wrap(ReasonMalformed, err, "JWS %s", th.name)
		}
		if subtle.ConstantTimeCompare(want, th.sum(leaf.Raw)) != 1 {
			return Fail(ReasonMalformed, "JWS %s does not match x5c[0]", th.name)
		}
	}
	return nil
}

// jwsThumbLeaf stands in for x5c[0] in the thumbprint comparison.
var jwsThumbLeaf = &x509.Certificate{Raw: []byte("thumbprint test leaf")}

type jwsHeaderVerdict struct {
	stage string // where it stopped: json, alg, header, x5c, thumb, ok
	err   string
	alg   string
	x5c   []string
}

func newJWSHeaderVerdict(b []byte) jwsHeaderVerdict {
	return jwsVerdictWith(b, jwsParseHeader)
}

// jwsVerdictWith runs the checks on the header as parse reads it, so that
// both readers (jwsScanHeader with its fallback, and jwsDecodeHeader alone)
// are held to the reference.
func jwsVerdictWith(b []byte, parse func([]byte) (*jwsHeader, error)) jwsHeaderVerdict {
	h, err := parse(b)
	if err != nil {
		return jwsHeaderVerdict{stage: "json", err: err.Error()}
	}
	alg, err := jwsAlg(h)
	if err != nil {
		return jwsHeaderVerdict{stage: "alg", err: err.Error()}
	}
	if err := jwsCheckHeader(h); err != nil {
		return jwsHeaderVerdict{stage: "header", err: err.Error(), alg: alg}
	}
	x5cb, err := jwsX5CStrings(h)
	if err != nil {
		return jwsHeaderVerdict{stage: "x5c", err: err.Error(), alg: alg}
	}
	var x5c []string
	for _, s := range x5cb {
		x5c = append(x5c, string(s))
	}
	if err := jwsCheckThumbprints(h, jwsThumbLeaf); err != nil {
		return jwsHeaderVerdict{stage: "thumb", err: err.Error(), alg: alg, x5c: x5c}
	}
	return jwsHeaderVerdict{stage: "ok", alg: alg, x5c: x5c}
}

func refJWSHeaderVerdict(b []byte) jwsHeaderVerdict {
	hdr, err := refJWSHeaderFields(b)
	if err != nil {
		return jwsHeaderVerdict{stage: "json", err: err.Error()}
	}
	alg, err := refJWSAlg(hdr)
	if err != nil {
		return jwsHeaderVerdict{stage: "alg", err: err.Error()}
	}
	if err := refJWSCheckHeader(hdr); err != nil {
		return jwsHeaderVerdict{stage: "header", err: err.Error(), alg: alg}
	}
	x5c, err := refJWSX5CStrings(hdr)
	if err != nil {
		return jwsHeaderVerdict{stage: "x5c", err: err.Error(), alg: alg}
	}
	if err := refJWSCheckThumbprints(hdr, jwsThumbLeaf); err != nil {
		return jwsHeaderVerdict{stage: "thumb", err: err.Error(), alg: alg, x5c: x5c}
	}
	return jwsHeaderVerdict{stage: "ok", alg: alg, x5c: x5c}
}

// jwsSameVerdict compares the two readings. One difference is by design:
// json.Unmarshal turns a null member of x5c into "", a string that can
// never decode to a certificate, where the walk refuses the array at once.
// Both end in ReasonMalformed.
func jwsSameVerdict(got, want jwsHeaderVerdict) bool {
	if got.stage == "x5c" && got.err == "malformed: JWS x5c is not an array of strings" &&
		want.stage != "json" && want.stage != "alg" && want.stage != "header" && slices.Contains(want.x5c, "") {
		return true
	}
	return got.stage == want.stage && got.err == want.err && got.alg == want.alg && slices.Equal(got.x5c, want.x5c)
}

func jwsHeaderSeeds() []string {
	cert := base64.StdEncoding.EncodeToString([]byte("not really DER"))
	s1 := sha1.Sum(jwsThumbLeaf.Raw)
	s256 := sha256.Sum256(jwsThumbLeaf.Raw)
	t1 := base64.RawURLEncoding.EncodeToString(s1[:])
	t256 := base64.RawURLEncoding.EncodeToString(s256[:])
	return []string{
		`{"alg":"RS256","x5c":["` + cert + `"]}`,
		`{"alg":"RS256","x5c":["` + cert + `","` + cert + `"],"kid":"k","typ":"JWT"}`,
		` { "alg" : "PS256" , "x5c" : [ "` + cert + `" ] , "b64" : true } `,
		`{"alg":"ES256","x5c":["` + cert + `"],"x5t":"` + t1 + `","x5t#S256":"` + t256 + `"}`,
		`{"alg":"RS256","x5c":["` + cert + `"],"x5t":"AAAA"}`,
		`{"alg":"RS256","x5c":["` + cert + `"],"x5t#S256":17}`,
		`{"alg":"RS256","x5c":["a","b","c","d","e","f"]}`,
		`{"alg":"RS256","x5c":["a",null,"c"]}`,
		`{"alg":"RS256","x5c":[null]}`,
		`{"alg":"RS256","x5c":[1,[2,{"x":[]}],"c"]}`,
		`{"alg":"RS256","x5c":[]}`,
		`{"alg":"RS256","x5c":null}`,
		`{"alg":"RS256","x5c":"` + cert + `"}`,
		`{"alg":"RS256"}`,
		`{"alg":"none","x5c":["a"]}`,
		`{"alg":"HS256"}`,
		`{"alg":"\u0052S256","x5c":["a\/b"]}`,
		`{"alg":256}`,
		`{"alg":["RS256"]}`,
		`{"alg":"RS256","alg":"none"}`,
		`{"a\u006cg":"RS256","alg":"none"}`,
		`{"ALG":"RS256"}`,
		`{"alg":"RS256","x5c":["a"],"jwk":{"kty":"RSA","n":[1,2,{}]}}`,
		`{"alg":"RS256","x5c":["a"],"jku":"https://x"}`,
		`{"alg":"RS256","x5c":["a"],"x5u":null}`,
		`{"alg":"RS256","x5c":["a"],"crit":["b64"],"b64":false}`,
		`{"alg":"RS256","x5c":["a"],"b64":"true"}`,
		`{"alg":"RS256","x5c":["a"],"b64":false}`,
		`{"alg":"RS256","x5c":["a"],"enc":"A128GCM","zip":"DEF"}`,
		`{"alg":"RS256","x5c":["a"],"zip":"DEF"}`,
		`{"alg":"RS256","x5c":["a"],"n":1e400,"m":-0.5e-3,"t":true,"f":false,"z":null}`,
		`{"alg":"RS256","x5c":["a"],"deep":[[[[{"a":[{}]}]]]]}`,
		`{"alg":"RS256","x5c":["a"]}{}`,
		`{"alg":"RS256","x5c":["a"]} x`,
		`{"alg":"RS256","x5c":["a"],}`,
		`{"alg":"RS256","x5c":["a",]}`,
		`{"alg":"RS256" "x5c":["a"]}`,
		`{"alg":"RS256","x5c":["a"]`,
		`{"alg":"RS256","x5c":["a"],"bad":"\x01"}`,
		`{"alg":"RS256","x5c":["a"],"bad":tru}`,
		`{"alg":"RS256","x5c":["a"],"bad":01}`,
		`{"alg":"RS256","x5c":["a"],"bad":[1 2]}`,
		`{"alg":"RS256","x5c":["a"],"bad":{"a" 1}}`,
		`{"alg":"RS256","x5c":["a"],"bad":{1:1}}`,
		`{"alg":"RS256","x5c":["a"],"bad":]}`,
		`{"alg":"RS256","x5c":["a"],"bad":}`,
		`{"alg":"RS256","x5c":["\ud800"]}`,
		`{"alg":"RS256","x5c":["a` + "\xff" + `"]}`,
		`["RS256"]`,
		`"alg"`,
		`{}`,
		`{`,
		``,
		`{"alg":"RS256","x5c":["a"],"k":"\u00e9"}`,
		`{"alg":"RS256","x5c":["a"],"k":"é"}`,
		`{"alg":"RS256","x5c":["a"],"k":"` + "a\tb" + `"}`,
		`{"alg":"RS256","x5c":["a"],"k":"` + "\x7f" + `"}`,
		`{"alg":"RS256","x5c":["a"],"b64":truex}`,
		`{"alg":"RS256","x5c":["a"],"b64":fals}`,
		`{"alg":"RS256","x5c":["a"],"n":nul}`,
		`{"alg":"RS256","x5c":[ "a" ,` + "\t\r\n" + `"b" ],"e":[ ],"t":true,"f":false,"z":null}`,
		`{"alg":"RS256","x5c":["a","b","c","d","e","f","g"]}`,
		`{"alg":"RS256","x5c":["a"],"crit":["b64"]}`,
		`{"alg":"RS256","x5c":["a"],"a":"b",}`,
		`{"alg":"RS256","x5c":["a"]`,
		`{"alg":"RS256","x5c":["a"`,
		`{"alg":"RS256","x5c":["a]}`,
		`{"alg":"RS256","x5c":["a"]}` + " \n",
		`{"alg":"RS256","x5c":["a"]}` + "\x00",
		`{ }`,
		`null`,
		`1e700`,
		`1e7`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"A":27,"B":28,"C":29,"D":30,"E":31,"F":32}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"A":27,"B":28,"C":29,"D":30,"E":31,"a":32}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"A":27,"B":28,"C":29,"D":30,"E":31,"F":32,"G":33}`,
	}
}

func TestJWSHeaderMatchesReference(t *testing.T) {
	seeds := jwsHeaderSeeds()
	// Nesting at encoding/json's limit and one past it, in a member and
	// inside x5c.
	for _, n := range []int{jwsMaxHeaderDepth - 1, jwsMaxHeaderDepth, jwsMaxHeaderDepth + 1} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		seeds = append(seeds,
			`{"alg":"RS256","x5c":["a"],"deep":`+deep+`}`,
			`{"alg":"RS256","x5c":["a",`+deep+`]}`)
	}
	stages := map[string]bool{}
	scanned := 0
	for i, s := range seeds {
		want := refJWSHeaderVerdict([]byte(s))
		if got := newJWSHeaderVerdict([]byte(s)); !jwsSameVerdict(got, want) {
			t.Errorf("seed %d %.80q:\n got  %+v\n want %+v", i, s, got, want)
		}
		if got := jwsVerdictWith([]byte(s), jwsDecodeHeader); !jwsSameVerdict(got, want) {
			t.Errorf("seed %d %.80q, encoding/json reader:\n got  %+v\n want %+v", i, s, got, want)
		}
		if _, ok := jwsScanHeader([]byte(s)); ok {
			scanned++
		} else if i < 5 {
			t.Errorf("seed %d %.80q: a signer's header shape not read by jwsScanHeader", i, s)
		}
		stages[want.stage] = true
	}
	if scanned == 0 || scanned == len(seeds) {
		t.Errorf("jwsScanHeader reads %d of %d seeds: both readers must be exercised", scanned, len(seeds))
	}
	// The seeds must reach every verdict, or the comparison proves little.
	for _, st := range []string{"json", "alg", "header", "x5c", "thumb", "ok"} {
		if !stages[st] {
			t.Errorf("no seed ends at stage %s", st)
		}
	}
}

func FuzzJWSHeaderDifferential(f *testing.F) {
	for _, s := range jwsHeaderSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := refJWSHeaderVerdict(b)
		if got := newJWSHeaderVerdict(b); !jwsSameVerdict(got, want) {
			t.Fatalf("%q:\n got  %+v\n want %+v", b, got, want)
		}
		if got := jwsVerdictWith(b, jwsDecodeHeader); !jwsSameVerdict(got, want) {
			t.Fatalf("%q, encoding/json reader:\n got  %+v\n want %+v", b, got, want)
		}
	})
}

func TestJWSDecodeSegmentRefusesWhatTheAlphabetRefuses(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{"QUJD", ""},
		{"QUI", ""},
		{"", ""},
		{"QUJ\nD", "byte 3 is not in the unpadded base64url alphabet"},
		{"QUJD\r", "byte 4 is not in the unpadded base64url alphabet"},
		{"QUI=", "byte 3 is not in the unpadded base64url alphabet"},
		{"QU+D", "byte 2 is not in the unpadded base64url alphabet"},
		{"QUJDR", "bad base64url: illegal base64 data"},
		{"QUJ", "bad base64url: illegal base64 data"}, // non-canonical tail bits
	} {
		out, err := jwsDecodeSegment([]byte(c.in))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.err == "" && base64.RawURLEncoding.EncodeToString(out) != c.in:
			t.Errorf("%q: decoded to %q", c.in, out)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		}
	}
	for _, c := range []struct {
		in, err string
	}{
		{"QUJD", ""},
		{"QUI=", ""},
		{"QU\nJD", "byte 2 is not in the standard alphabet"},
		{"QUJD\r\n", "byte 4 is not in the standard alphabet"},
		{"QU-D", "base64url where standard base64 is required"},
		{"QUI", "bad base64: illegal base64 data"},
		{"QUJ=", "bad base64: illegal base64 data"},
	} {
		out, err := envDecodeStdBase64([]byte(c.in))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("std %q: %v", c.in, err)
		case c.err == "" && base64.StdEncoding.EncodeToString(out) != c.in:
			t.Errorf("std %q: decoded to %q", c.in, out)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("std %q: error %v, want %q", c.in, err, c.err)
		}
	}
}

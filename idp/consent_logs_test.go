package idp

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/watashi-id/watashi/pkibridge"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Issue 5: no claim value appears in any log line, during a whole run:
// proofing, a consent screen with verified claims, token, ID token,
// userinfo, introspection, refresh, a denial, a refused form, the
// account page and a revocation. The provider's logger and the process
// default (which zitadel and the verifier fall back to) both write JSON
// at debug level into buffers that are searched for every fact, in the
// forms a certificate (EYYYYMMDD) and OIDC (ISO 8601) give them.
//
// Nor does any identifier that links the resident: the account ID, the
// serial numbers and fingerprints of both certificates. The run goes on
// through the lines that once carried them: the signature certificate is
// revoked, the facts are found stale at the next consent, an old token
// has its claims withheld, and the revoked card is refused at the wallet.
//
// Not parallel: it swaps slog's process default.
func TestLogsCarryNoClaimValues(t *testing.T) {
	var own, def syncBuffer
	debug := &slog.HandlerOptions{Level: slog.LevelDebug}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&def, debug)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	facts := jpkisim.Facts{Name: "渡辺\u3000精一郎", Gender: "1", Birthdate: "319750314",
		Address: "沖縄県那覇市泉崎一丁目2番2号"}
	secrets := []string{"渡辺\u3000精一郎", "渡辺", "精一郎", "1975-03-14", "319750314", "19750314",
		"沖縄県那覇市泉崎一丁目2番2号", "那覇市泉崎"}

	revURL := simulatorPKI(t).revURL
	o := newConsentOP(t, store.NewMemory(), func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&own, debug))
		o.Verifier.Logger = o.Logger
		// The simulator's current answer on every question, so that the
		// revocation below is seen.
		checker, err := pkibridge.NewChecker(nil, []string{revURL + "/ocsp/0", revURL + "/ocsp/1"}, nil,
			pkibridge.CheckerOptions{OCSP: pkibridge.OCSPOptions{NoCache: true}, Logger: o.Logger})
		if err != nil {
			t.Fatal(err)
		}
		o.Verifier.Revocation = checker
		o.AccessTokenTTL = 3 * time.Hour
	})
	w := o.pki.wallet(t, facts)
	b := o.proofed(w)
	acct := b.sessionAccount()

	claims := `{"userinfo":{"name":{"essential":true},"birthdate":{"value":"1975-03-14"},"address":null,` +
		`"verified_claims":{"verification":{"trust_framework":null,"evidence":[{"type":null,"issuer":null,"serial_number":null}]},` +
		`"claims":{"name":null,"birthdate":null}}},"id_token":{"family_name":{"values":["渡辺"]}}}`
	ar, conf, v := b.request("ida", []string{"gender", "offline_access"}, claims)
	// A forged form first (refused and logged), then everything.
	_, _, page := b.get(authreq.ConsentURL(ar))
	action, fields := pageForm(t, page, "consent")
	forged := submission(fields)
	forged.Add("claim", "email")
	forged.Set("action", "allow")
	if code, _, _ := b.post(action, forged); code != http.StatusBadRequest {
		t.Fatalf("forged form: %d", code)
	}
	_, loc := b.consentAll(ar)
	tok := o.tokens(conf, v, b.callback(loc))
	if st, ui := o.userinfo(tok.AccessToken); st != http.StatusOK || ui["name"] != facts.Name {
		t.Fatalf("userinfo %d %v", st, personal(ui))
	}
	if in := o.introspect(tok.AccessToken, "ida"); in["birthdate"] != "1975-03-14" {
		t.Fatalf("introspection %v", personal(in))
	}
	if idc := idClaims(t, tok); idc["family_name"] != "渡辺" {
		t.Fatalf("ID token %v", personal(idc))
	}
	if st, _ := o.refresh("ida", tok.RefreshToken); st != http.StatusOK {
		t.Fatalf("refresh %d", st)
	}
	if st, _ := o.refresh("ida", tok.RefreshToken); st == http.StatusOK { // reuse: logged, family revoked
		t.Fatal("refresh token reuse accepted")
	}
	// A denial, which the library logs to the default logger.
	ar, _, _ = b.request("web", []string{"name", "birthdate"}, "")
	if code, loc := b.consent(ar, "deny"); code != http.StatusFound || !strings.Contains(loc, "access_denied") {
		t.Fatalf("deny: %d %q", code, loc)
	}
	// A value constraint that does not match, and prompt=none.
	ar, _, _ = o.authorizeClaims("web", []string{"name"}, `{"userinfo":{"name":{"value":"渡辺　精一郎"}}}`, oauth2.SetAuthURLParam("prompt", "none"))
	b.get(authreq.LoginURL(ar))
	b.get(authreq.ConsentURL(ar))
	// The account page and a revocation.
	_, _, page = b.get("/account")
	raction, rfields := revokeForm(t, page, "ida")
	rv := submission(rfields)
	rv.Set("action", "revoke")
	if code, _, _ := b.post(raction, rv); code != http.StatusSeeOther {
		t.Fatalf("revoke: %d", code)
	}
	// A malformed claims parameter (its error goes back to the RP).
	res := o.get(o.oauth("web", "name").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("claims", `{"userinfo":{"name":{"value":"渡辺　精一郎","purpose":"x"}}}`)))
	if u, _ := url.Parse(res.Header.Get("Location")); u.Query().Get("error") != "invalid_request" {
		t.Fatalf("malformed claims: %q", res.Header.Get("Location"))
	}

	// The municipality revokes the signature certificate; an hour later
	// the consent step finds the facts stale, an old token releases
	// nothing, and the revoked card cannot prove again.
	ar, conf, v = b.request("web", []string{"name"}, "")
	_, loc = b.consentAll(ar)
	tok = o.tokens(conf, v, b.callback(loc))
	o.pki.sigCA.Revoke(w.SigCert.SerialNumber, time.Now(), 4)
	o.clock.Advance(2 * time.Hour)
	ar, _, _ = b.request("web", []string{"name"}, "")
	if code, loc, _ := b.get(authreq.ConsentURL(ar)); code != http.StatusSeeOther || !strings.Contains(loc, "notice=") {
		t.Fatalf("stale facts: %d %q", code, loc)
	}
	if st, ui := o.userinfo(tok.AccessToken); st != http.StatusOK || len(personal(ui)) != 0 {
		t.Fatalf("old token after the revocation: %d %v", st, personal(ui))
	}
	ar, _, _ = o.authorizeClaims("web", []string{"name"}, "")
	tx, _ := b.openTx(ar, authreq.PurposeProofing)
	if err := w.Approve(context.Background(), o.ts.Client(), b.walletURL(tx), "jws"); err == nil {
		t.Fatal("a revoked signature certificate proved again")
	}

	logs := map[string]string{"provider": own.String(), "default": def.String()}
	for _, want := range []string{`"msg":"http request"`, `"msg":"consent recorded"`, "access_denied", `"msg":"facts marked stale`,
		`"msg":"claims withheld`, `"msg":"wallet submission refused"`, `"msg":"sign-in transaction verified"`, `"account_ref":"`} {
		if !strings.Contains(logs["provider"], want) || logs["default"] == "" {
			t.Fatalf("the capture missed %s:\nprovider: %.500s\ndefault: %.500s", want, logs["provider"], logs["default"])
		}
	}
	ids := linkingIdentifiers(acct, w.SigCert, w.AuthCert)
	for name, all := range logs {
		for _, line := range strings.Split(all, "\n") {
			for _, s := range secrets {
				if strings.Contains(line, s) {
					t.Errorf("%s log line holds a claim value (%q): %.400s", name, s, line)
				}
			}
			if what := ids.find(line); what != "" {
				t.Errorf("%s log line holds %s: %.400s", name, what, line)
			}
		}
	}
}

// identifiers are the values that link a resident across relying parties
// or log lines, each with a name for the failure message.
type identifiers struct {
	substrings map[string]string // value -> what it is
	serials    map[string]string // decimal serial -> what it is
}

// linkingIdentifiers lists, for an account and its certificates, the
// account ID, and each certificate's serial (decimal and hex) and SHA-256
// fingerprint (hex in both cases, base64, base64url).
func linkingIdentifiers(account string, certs ...*x509.Certificate) identifiers {
	ids := identifiers{substrings: map[string]string{account: "the account ID"}, serials: map[string]string{}}
	for i, c := range certs {
		what := fmt.Sprintf("certificate %d", i)
		sum := sha256.Sum256(c.Raw)
		for _, v := range []string{hex.EncodeToString(sum[:]), strings.ToUpper(hex.EncodeToString(sum[:])),
			base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:])} {
			ids.substrings[v] = what + "'s fingerprint"
		}
		if hx := c.SerialNumber.Text(16); len(hx) >= 6 {
			ids.substrings[hx] = what + "'s serial (hex)"
		}
		ids.serials[c.SerialNumber.String()] = what + "'s serial"
	}
	return ids
}

// reDigits finds numbers in a log line; a serial is refused wherever it
// stands, except as the value of the access log's byte count and status.
var reDigits = regexp.MustCompile(`("(bytes|status)":)?[0-9]+`)

// find names the identifier a log line holds, or "".
func (ids identifiers) find(line string) string {
	for v, what := range ids.substrings {
		if strings.Contains(line, v) {
			return what
		}
	}
	for _, m := range reDigits.FindAllStringSubmatch(line, -1) {
		if m[1] != "" {
			continue
		}
		if what, ok := ids.serials[m[0]]; ok {
			return what
		}
	}
	return ""
}

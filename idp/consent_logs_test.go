package idp

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/store"
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

	o := newConsentOP(t, store.NewMemory(), func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&own, debug))
		o.Verifier.Logger = o.Logger
	})
	w := o.pki.wallet(t, facts)
	b := o.proofed(w)

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

	logs := map[string]string{"provider": own.String(), "default": def.String()}
	if !strings.Contains(logs["provider"], `"msg":"http request"`) || !strings.Contains(logs["provider"], `"msg":"consent recorded"`) ||
		!strings.Contains(logs["provider"], "access_denied") || logs["default"] == "" {
		t.Fatalf("the capture missed the run's logs:\nprovider: %.500s\ndefault: %.500s", logs["provider"], logs["default"])
	}
	for name, all := range logs {
		for _, line := range strings.Split(all, "\n") {
			for _, s := range secrets {
				if strings.Contains(line, s) {
					t.Errorf("%s log line holds a claim value (%q): %.400s", name, s, line)
				}
			}
		}
	}
}

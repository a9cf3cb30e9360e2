package idp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/store"
)

// postToken posts a token request with the given Authorization header
// ("" for none) and returns the status, the WWW-Authenticate header and
// the JSON body.
func (o *testOP) postToken(form url.Values, authorization string) (int, string, map[string]any) {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.issuer+tokenPath, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := o.hc.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	m := jsonBody(o.t, res)
	return res.StatusCode, res.Header.Get("WWW-Authenticate"), m
}

// jsonBody reads a JSON answer; anything else is kept under "_raw".
func jsonBody(t testing.TB, res *http.Response) map[string]any {
	t.Helper()
	body := readBody(t, res)
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	if m == nil {
		m = map[string]any{"_raw": body}
	}
	return m
}

func codeForm(code, redirect, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}}
}

// Whoever holds a code (from browser history, a log, a Referer) but not
// the client's credentials and verifier can neither spend it nor learn
// anything: the client is authenticated before the code is looked at,
// the code must be that client's, then redirect_uri, then PKCE, and only
// then is it spent. The RP's own exchange works afterwards.
func TestStolenCodeIsNotSpent(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		conf := o.oauth("web")
		v := oauth2.GenerateVerifier()
		code := o.login(conf, v, testAccount, nil)
		ys := strings.Repeat("y", 43)
		tests := []struct {
			name      string
			form      url.Values
			auth      string
			status    int
			err       string
			challenge bool
		}{
			// The audit's curl: no credentials, a client_id nobody registered.
			{"attacker without credentials", func() url.Values {
				f := codeForm(code, "https://x/", ys)
				f.Set("client_id", "attacker")
				return f
			}(), "", http.StatusUnauthorized, "invalid_client", true},
			{"no client at all", codeForm(code, conf.RedirectURL, v), "", http.StatusUnauthorized, "invalid_client", true},
			{"wrong secret", codeForm(code, conf.RedirectURL, v), "Basic " + basicAuth("web", "wrong"), http.StatusUnauthorized, "invalid_client", true},
			{"wrong secret, bogus code", codeForm("bogus", conf.RedirectURL, v), "Basic " + basicAuth("web", "wrong"), http.StatusUnauthorized, "invalid_client", true},
			{"unknown client over Basic", codeForm(code, conf.RedirectURL, v), "Basic " + basicAuth("attacker", "x"), http.StatusUnauthorized, "invalid_client", true},
			// Authenticated, but not the code's client: a public client
			// (client_id alone) and a confidential one.
			{"public client", func() url.Values {
				f := codeForm(code, conf.RedirectURL, v)
				f.Set("client_id", "public")
				return f
			}(), "", http.StatusBadRequest, "invalid_grant", false},
			{"another client", codeForm(code, conf.RedirectURL, v), "Basic " + basicAuth("other", testSecret), http.StatusBadRequest, "invalid_grant", false},
			{"wrong redirect_uri", codeForm(code, "https://rp.example/elsewhere", v), "Basic " + basicAuth("web", testSecret), http.StatusBadRequest, "invalid_grant", false},
			{"wrong verifier", codeForm(code, conf.RedirectURL, ys), "Basic " + basicAuth("web", testSecret), http.StatusBadRequest, "invalid_grant", false},
		}
		for _, tc := range tests {
			st, challenge, body := o.postToken(tc.form, tc.auth)
			if st != tc.status || body["error"] != tc.err {
				t.Fatalf("%s: %d %v, want %d %s", tc.name, st, body, tc.status, tc.err)
			}
			// RFC 6749 §5.2: a 401 names the scheme to use.
			if got := strings.HasPrefix(challenge, `Basic realm="`+o.issuer+`"`); got != tc.challenge {
				t.Fatalf("%s: WWW-Authenticate %q", tc.name, challenge)
			}
		}
		tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("the RP's exchange after %d refused attempts: %v", len(tests), err)
		}
		if st, _ := o.userinfo(tok.AccessToken); st != http.StatusOK {
			t.Fatalf("userinfo: %d", st)
		}
	})
}

// RFC 6749 §4.1.2's replay revocation answers the code's own client,
// authenticated and passing every check, presenting the spent code again.
// Anyone else presenting it changes nothing: the tokens it minted live.
func TestSpentCodeReplayRules(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	conf := o.oauth("web", "offline_access")
	v := oauth2.GenerateVerifier()
	code := o.login(conf, v, testAccount, nil)
	tok, err := conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	attacker := codeForm(code, "https://x/", strings.Repeat("y", 43))
	attacker.Set("client_id", "attacker")
	public := codeForm(code, conf.RedirectURL, v)
	public.Set("client_id", "public")
	for _, tc := range []struct {
		name string
		form url.Values
		auth string
	}{
		{"attacker", attacker, ""},
		{"public client with the verifier", public, ""},
		{"another client with the verifier", codeForm(code, conf.RedirectURL, v), "Basic " + basicAuth("other", testSecret)},
		{"own client, wrong verifier", codeForm(code, conf.RedirectURL, strings.Repeat("y", 43)), "Basic " + basicAuth("web", testSecret)},
		{"own client, wrong redirect_uri", codeForm(code, "https://rp.example/elsewhere", v), "Basic " + basicAuth("web", testSecret)},
		{"own client, wrong secret", codeForm(code, conf.RedirectURL, v), "Basic " + basicAuth("web", "wrong")},
	} {
		if st, _, body := o.postToken(tc.form, tc.auth); st == http.StatusOK {
			t.Fatalf("%s: spent code accepted: %v", tc.name, body)
		}
		if in := o.introspect(tok.AccessToken, "web"); in["active"] != true {
			t.Fatalf("%s revoked the RP's tokens: %v", tc.name, in)
		}
	}
	// The code's own client, passing every check: a replay.
	st, _, body := o.postToken(codeForm(code, conf.RedirectURL, v), "Basic "+basicAuth("web", testSecret))
	if st != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", st, body)
	}
	if in := o.introspect(tok.AccessToken, "web"); in["active"] != false {
		t.Fatalf("tokens alive after the replay: %v", in)
	}
	if st, _ := o.refresh("web", tok.RefreshToken); st == http.StatusOK {
		t.Fatal("refresh token alive after the replay")
	}
}

// Two good exchanges of one code at once: exactly one spends it (the
// SetNX of its grant), the other is a replay by the code's own client,
// which revokes what the code minted. No token of the code outlives the
// race, and at most one exchange answered with tokens.
func TestConcurrentCodeExchange(t *testing.T) {
	backends(t, func(t *testing.T, newKV func(testing.TB) store.KV) {
		o := newTestOP(t, newKV(t), nil)
		conf := o.oauth("web", "offline_access")
		for round := 0; round < 5; round++ {
			v := oauth2.GenerateVerifier()
			code := o.login(conf, v, testAccount, nil)
			const n = 4
			var wg sync.WaitGroup
			toks := make([]*oauth2.Token, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					toks[i], errs[i] = conf.Exchange(o.ctx(), code, oauth2.VerifierOption(v))
				}()
			}
			close(start)
			wg.Wait()
			won := 0
			for i := range n {
				var re *oauth2.RetrieveError
				switch {
				case errs[i] == nil:
					won++
					if in := o.introspect(toks[i].AccessToken, "web"); in["active"] != false {
						t.Fatalf("round %d: a token survived the race: %v", round, in)
					}
				case !asRetrieve(errs[i], &re) || re.ErrorCode != "invalid_grant":
					t.Fatalf("round %d: %v", round, errs[i])
				}
			}
			if won > 1 {
				t.Fatalf("round %d: %d exchanges of one code succeeded", round, won)
			}
		}
	})
}

// The scope of a token response is what was granted (RFC 6749 §3.3): a
// claim scope stays if the resident granted at least one of its claims;
// openid and offline_access stay as granted. Refresh and introspection
// say the same.
func TestTokenResponseScope(t *testing.T) {
	o := newTestOP(t, store.NewMemory(), nil)
	conf := o.oauth("web", "name", "birthdate", "gender", "address", "offline_access")
	for _, tc := range []struct {
		name    string
		granted []string
		want    string
	}{
		{"all", []string{"name", "family_name", "given_name", "birthdate", "gender", "address"}, "openid name birthdate gender address offline_access"},
		{"name only", []string{"name"}, "openid name offline_access"},
		{"part of a scope", []string{"family_name", "address"}, "openid name address offline_access"},
		{"an age check instead of the birth date", []string{"age_over_20"}, "openid offline_access"},
		{"nothing", nil, "openid offline_access"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := o.login(conf, v, testAccount, tc.granted)
			st, _, body := o.postToken(codeForm(code, conf.RedirectURL, v), "Basic "+basicAuth("web", testSecret))
			if st != http.StatusOK || body["scope"] != tc.want {
				t.Fatalf("token response scope %q, want %q (%d)", body["scope"], tc.want, st)
			}
			if in := o.introspect(body["access_token"].(string), "web"); in["scope"] != tc.want {
				t.Fatalf("introspection scope %q, want %q", in["scope"], tc.want)
			}
			st, r := o.refresh("web", body["refresh_token"].(string))
			if st != http.StatusOK || r["scope"] != tc.want {
				t.Fatalf("refresh scope %q, want %q (%d)", r["scope"], tc.want, st)
			}
		})
	}
	// A refresh narrowed to scopes the resident refused reports none of
	// them.
	v := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(o.ctx(), o.login(conf, v, testAccount, []string{"name"}), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	st, r := o.postForm(tokenPath, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {"openid gender"}}, "web", testSecret)
	if st != http.StatusOK || r["scope"] != "openid" {
		t.Fatalf("narrowed refresh: %d %v", st, r)
	}
}

package demorp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config describes the RP's registration at the provider.
type Config struct {
	// Issuer is the provider's issuer URL, exactly as discovery states it.
	Issuer       string
	ClientID     string
	ClientSecret string
	// BaseURL is where the RP is reachable from the browser, without a
	// trailing slash (the demo uses <issuer>/rp). The redirect URI is
	// BaseURL+"/callback" and the post-logout URI BaseURL+"/".
	BaseURL string
	// Scopes requested; "openid" is added when missing.
	Scopes []string
	// HTTPClient talks to the provider (discovery, token, JWKS, userinfo).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Bounds on the in-memory state: the demo may be reachable by anyone.
const (
	maxPending  = 1000
	maxSessions = 1000
	pendingTTL  = 15 * time.Minute
	sessionTTL  = 8 * time.Hour
	loginCookie = "demorp-login"
	sessCookie  = "demorp-session"
)

// RP is an http.Handler serving the RP's pages. Mount it so that it sees
// paths relative to BaseURL: http.StripPrefix("/rp", rp) for the demo.
type RP struct {
	cfg        Config
	basePath   string // path of BaseURL, "" or "/rp"
	secure     bool
	log        *slog.Logger
	mu         sync.Mutex
	disc       *discovered
	pending    *boundedMap[*pending]
	sessions   *boundedMap[*session]
	scopeSlice []string
}

type discovered struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      *oauth2.Config
	endSession string
}

type pending struct {
	state, nonce, verifier string
	created                time.Time
}

type session struct {
	idToken     string
	idClaims    map[string]any
	userinfo    map[string]any
	userinfoErr string
	refresh     bool
	created     time.Time
}

// New checks the configuration. Discovery happens on first use, so the
// RP can be built before the provider listens.
func New(cfg Config) (*RP, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.BaseURL == "" {
		return nil, errors.New("demorp: Issuer, ClientID and BaseURL are required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("demorp: BaseURL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	scopes := []string{oidc.ScopeOpenID}
	for _, s := range cfg.Scopes {
		if s != oidc.ScopeOpenID {
			scopes = append(scopes, s)
		}
	}
	return &RP{
		cfg:        cfg,
		basePath:   strings.TrimSuffix(u.Path, "/"),
		secure:     u.Scheme == "https",
		log:        cfg.Logger,
		pending:    newBoundedMap[*pending](maxPending),
		sessions:   newBoundedMap[*session](maxSessions),
		scopeSlice: scopes,
	}, nil
}

// RedirectURL is the redirect URI to register for this RP.
func (rp *RP) RedirectURL() string { return rp.cfg.BaseURL + "/callback" }

// PostLogoutURL is the post-logout redirect URI to register.
func (rp *RP) PostLogoutURL() string { return rp.cfg.BaseURL + "/" }

// discover fetches the provider metadata once; after a failure the next
// request tries again.
func (rp *RP) discover(ctx context.Context) (*discovered, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.disc != nil {
		return rp.disc, nil
	}
	ctx = oidc.ClientContext(ctx, rp.cfg.HTTPClient)
	p, err := oidc.NewProvider(ctx, rp.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&extra)
	// The demo client is registered for client_secret_basic; without this
	// x/oauth2 retries a failed exchange with the secret in the body.
	endpoint := p.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	rp.disc = &discovered{
		provider: p,
		verifier: p.Verifier(&oidc.Config{ClientID: rp.cfg.ClientID}),
		oauth: &oauth2.Config{
			ClientID:     rp.cfg.ClientID,
			ClientSecret: rp.cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  rp.RedirectURL(),
			Scopes:       rp.scopeSlice,
		},
		endSession: extra.EndSession,
	}
	return rp.disc, nil
}

func (rp *RP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "", "/":
		rp.home(w, r)
	case "/login":
		rp.login(w, r)
	case "/callback":
		rp.callback(w, r)
	case "/logout":
		rp.logout(w, r)
	case "/logo.png":
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("Content-Type", "image/png")
		_, _ = w.Write(logoPNG)
	default:
		http.NotFound(w, r)
	}
}

func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (rp *RP) cookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name: name, Value: value, Path: rp.basePath + "/",
		HttpOnly: true, Secure: rp.secure, SameSite: http.SameSiteLaxMode,
	}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

// login starts a code flow: fresh state, nonce and PKCE verifier, kept
// server-side under a random cookie.
func (rp *RP) login(w http.ResponseWriter, r *http.Request) {
	d, err := rp.discover(r.Context())
	if err != nil {
		rp.fail(w, http.StatusBadGateway, "The provider's discovery document could not be loaded.", err)
		return
	}
	p := &pending{state: randomString(), nonce: randomString(), verifier: oauth2.GenerateVerifier(), created: time.Now()}
	id := randomString()
	rp.pending.put(id, p)
	rp.cookie(w, loginCookie, id, pendingTTL)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier)}
	switch prompt := r.URL.Query().Get("prompt"); prompt {
	case "login", "consent", "none":
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	// acr_values=aal3 asks for the JPKI certificate even when a passkey
	// could answer.
	switch acr := r.URL.Query().Get("acr_values"); acr {
	case "aal2", "aal3":
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", acr))
	}
	http.Redirect(w, r, d.oauth.AuthCodeURL(p.state, opts...), http.StatusFound)
}

// callback finishes the flow. Every check go-oidc leaves to the RP is
// made here: state, nonce and at_hash.
func (rp *RP) callback(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		rp.fail(w, http.StatusBadRequest, "No login in progress in this browser (the login cookie is missing). Start again.", nil)
		return
	}
	rp.cookie(w, loginCookie, "", -1)
	p, ok := rp.pending.take(c.Value)
	if !ok || time.Since(p.created) > pendingTTL {
		rp.fail(w, http.StatusBadRequest, "This login has expired or was already used. Start again.", nil)
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1 {
		rp.fail(w, http.StatusBadRequest, "The state parameter does not match: this response was not meant for this browser.", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		rp.render(w, http.StatusOK, pageView{Error: e, ErrorDescription: q.Get("error_description")})
		return
	}
	d, err := rp.discover(r.Context())
	if err != nil {
		rp.fail(w, http.StatusBadGateway, "The provider's discovery document could not be loaded.", err)
		return
	}
	ctx := oidc.ClientContext(r.Context(), rp.cfg.HTTPClient)
	tok, err := d.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		rp.fail(w, http.StatusBadGateway, "The code exchange failed.", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		rp.fail(w, http.StatusBadGateway, "The token response has no ID token.", nil)
		return
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		rp.fail(w, http.StatusBadGateway, "The ID token did not verify.", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.nonce)) != 1 {
		rp.fail(w, http.StatusBadGateway, "The ID token's nonce does not match this login.", nil)
		return
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			rp.fail(w, http.StatusBadGateway, "The ID token's at_hash does not match the access token.", err)
			return
		}
	}
	s := &session{idToken: raw, created: time.Now(), refresh: tok.RefreshToken != ""}
	if err := idt.Claims(&s.idClaims); err != nil {
		rp.fail(w, http.StatusBadGateway, "The ID token's claims could not be read.", err)
		return
	}
	ui, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err == nil && ui.Subject != idt.Subject {
		err = errors.New("userinfo sub differs from the ID token's sub")
	}
	if err == nil {
		err = ui.Claims(&s.userinfo)
	}
	if err != nil {
		// Shown to the user, who owns these claims; never logged with data.
		s.userinfoErr = err.Error()
		rp.log.WarnContext(r.Context(), "demo RP: userinfo failed", "error", err)
	}
	id := randomString()
	rp.sessions.put(id, s)
	rp.cookie(w, sessCookie, id, sessionTTL)
	http.Redirect(w, r, rp.basePath+"/", http.StatusFound)
}

func (rp *RP) currentSession(r *http.Request) (string, *session) {
	c, err := r.Cookie(sessCookie)
	if err != nil {
		return "", nil
	}
	s, ok := rp.sessions.get(c.Value)
	if !ok || time.Since(s.created) > sessionTTL {
		return "", nil
	}
	return c.Value, s
}

// logout forgets the RP session and asks the provider to end its own
// (RP-initiated logout), coming back to the home page.
func (rp *RP) logout(w http.ResponseWriter, r *http.Request) {
	id, s := rp.currentSession(r)
	rp.cookie(w, sessCookie, "", -1)
	if s == nil {
		http.Redirect(w, r, rp.basePath+"/", http.StatusFound)
		return
	}
	rp.sessions.take(id)
	d, err := rp.discover(r.Context())
	if err != nil || d.endSession == "" {
		http.Redirect(w, r, rp.basePath+"/", http.StatusFound)
		return
	}
	q := url.Values{
		"id_token_hint":            {s.idToken},
		"client_id":                {rp.cfg.ClientID},
		"post_logout_redirect_uri": {rp.PostLogoutURL()},
		"state":                    {randomString()},
	}
	sep := "?"
	if strings.Contains(d.endSession, "?") {
		sep = "&"
	}
	http.Redirect(w, r, d.endSession+sep+q.Encode(), http.StatusFound)
}

func (rp *RP) home(w http.ResponseWriter, r *http.Request) {
	v := pageView{Issuer: rp.cfg.Issuer, ClientID: rp.cfg.ClientID, Scopes: strings.Join(rp.scopeSlice, " "), Base: rp.basePath}
	if _, s := rp.currentSession(r); s != nil {
		v.SignedIn = true
		v.IDClaims = prettyJSON(s.idClaims)
		v.Userinfo = prettyJSON(s.userinfo)
		v.UserinfoErr = s.userinfoErr
		v.Received = received(s.idClaims, s.userinfo)
		v.Refresh = s.refresh
		if sub, ok := s.idClaims["sub"].(string); ok {
			v.Sub = sub
		}
		if name, ok := s.userinfo["name"].(string); ok {
			v.Name = name
		}
	}
	rp.render(w, http.StatusOK, v)
}

// protocolClaims are the claims every ID token or userinfo answer has,
// whatever the resident shared: they say who signed in how, not about
// the resident.
var protocolClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true, "nonce": true,
	"auth_time": true, "acr": true, "amr": true, "azp": true, "at_hash": true, "c_hash": true, "s_hash": true, "sid": true,
	"client_id": true,
}

// receivedClaim is one claim the RP received, and where.
type receivedClaim struct {
	Name              string
	IDToken, Userinfo bool
}

// received lists the claims about the resident that the RP actually
// received, in the ID token and from userinfo: what the resident granted.
// (The token response's scope says what was asked for, which can be
// more.)
func received(idClaims, userinfo map[string]any) []receivedClaim {
	seen := map[string]*receivedClaim{}
	var order []string
	add := func(m map[string]any, id bool) {
		for k := range m {
			if protocolClaims[k] {
				continue
			}
			c, ok := seen[k]
			if !ok {
				c = &receivedClaim{Name: k}
				seen[k] = c
				order = append(order, k)
			}
			if id {
				c.IDToken = true
			} else {
				c.Userinfo = true
			}
		}
	}
	add(idClaims, true)
	add(userinfo, false)
	slices.SortFunc(order, func(a, b string) int { return claimRank(a) - claimRank(b) })
	out := make([]receivedClaim, 0, len(order))
	for _, k := range order {
		out = append(out, *seen[k])
	}
	return out
}

// claimRank orders claims as a person reads them: the name first, then
// the rest of the basic four facts, then anything else.
func claimRank(name string) int {
	for i, n := range []string{"name", "family_name", "given_name", "birthdate", "age_over_18", "age_over_20", "gender", "address", "verified_claims"} {
		if n == name {
			return i
		}
	}
	return 100 + int(name[0])
}

func prettyJSON(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}

// fail shows a message; the cause goes to the log, not the page.
func (rp *RP) fail(w http.ResponseWriter, status int, msg string, cause error) {
	if cause != nil {
		rp.log.Warn("demo RP: "+msg, "error", cause)
	}
	rp.render(w, status, pageView{Base: rp.basePath, Problem: msg})
}

type pageView struct {
	Issuer, ClientID, Scopes, Base string
	SignedIn                       bool
	Sub, Name                      string
	IDClaims, Userinfo             string
	UserinfoErr                    string
	Received                       []receivedClaim
	Refresh                        bool
	Error, ErrorDescription        string
	Problem                        string
}

func (rp *RP) render(w http.ResponseWriter, status int, v pageView) {
	if v.Base == "" {
		v.Base = rp.basePath
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pageTmpl.Execute(w, v); err != nil {
		rp.log.Error("demo RP: render", "error", err)
	}
}

var pageTmpl = template.Must(template.New("rp").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo RP · Watashi</title>
<style>
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d2330;background:#f6f7f9}
header{display:flex;justify-content:space-between;align-items:baseline}
h1{font-size:1.4rem}.tag{font-size:.75rem;background:#ffe7a3;padding:.1rem .4rem;border-radius:.3rem}
.card{background:#fff;border:1px solid #dde1e8;border-radius:.6rem;padding:1rem 1.2rem;margin:1rem 0}
a.button{display:inline-block;background:#1f4fd1;color:#fff;text-decoration:none;padding:.7rem 1.2rem;border-radius:.4rem;font-weight:600}
a.button.secondary{background:#fff;color:#1f4fd1;border:1px solid #1f4fd1}
pre{background:#0f1420;color:#d8e1f0;padding:.8rem;border-radius:.4rem;overflow:auto;font-size:.85rem}
.err{border-color:#e3a3a3;background:#fff5f5}dt{font-weight:600}dd{margin:0 0 .5rem 0;word-break:break-all}
.claims{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4rem}.claims li{background:#e8f0fe;border-radius:1rem;padding:.15rem .7rem}
.where,.note{color:#4a5260;font-size:.85rem}.brand{display:flex;align-items:center;gap:.6rem}.brand img{border-radius:.5rem}
</style></head><body>
<header><div class="brand"><img src="{{.Base}}/logo.png" alt="" width="40" height="40"><h1>Demo relying party</h1></div><span class="tag">SIMULATOR · デモ</span></header>
<main>
{{if .Problem}}<div class="card err"><p>{{.Problem}}</p><p><a class="button" href="{{.Base}}/">Back</a></p></div>
{{else if .Error}}<div class="card err"><h2>The provider returned an error</h2>
<dl><dt>error</dt><dd>{{.Error}}</dd>{{if .ErrorDescription}}<dt>error_description</dt><dd>{{.ErrorDescription}}</dd>{{end}}</dl>
<p><a class="button" href="{{.Base}}/login">Try again</a> <a class="button secondary" href="{{.Base}}/">Home</a></p></div>
{{else if .SignedIn}}<div class="card"><h2>Signed in{{if .Name}} as {{.Name}}{{end}}</h2>
<p>Your pairwise subject at this RP: <code>{{.Sub}}</code></p>
<div id="rp-received"><h3>Claims received</h3>{{if .Received}}<ul class="claims">{{range .Received}}<li><code>{{.Name}}</code> <span class="where">{{if .IDToken}}ID token{{end}}{{if and .IDToken .Userinfo}} · {{end}}{{if .Userinfo}}userinfo{{end}}</span></li>{{end}}</ul>
{{else}}<p>None: only the pairwise subject.</p>{{end}}
<p class="note">What the resident shared, as this RP received it. The scope of the token response says what was asked for, which can be more.{{if .Refresh}} A refresh token was received.{{end}}</p></div>
<p><a class="button secondary" href="{{.Base}}/logout">Log out</a> <a class="button secondary" href="{{.Base}}/login?prompt=login">Sign in again</a> <a class="button secondary" id="rp-aal3" href="{{.Base}}/login?acr_values=aal3">Sign in with the certificate (aal3)</a></p></div>
<div class="card"><h3 id="idt-h">ID token claims (verified with go-oidc)</h3><pre tabindex="0" role="region" aria-labelledby="idt-h">{{.IDClaims}}</pre></div>
<div class="card"><h3 id="ui-h">Userinfo</h3>{{if .UserinfoErr}}<p>{{.UserinfoErr}}</p>{{else}}<pre tabindex="0" role="region" aria-labelledby="ui-h">{{.Userinfo}}</pre>{{end}}</div>
{{else}}<div class="card"><p>This page is an ordinary OpenID Connect client (golang.org/x/oauth2 and coreos/go-oidc) registered at
<code>{{.Issuer}}</code> as <code>{{.ClientID}}</code>. It asks for <code>{{.Scopes}}</code> with PKCE (S256), state and nonce.</p>
<p><a class="button" href="{{.Base}}/login">Sign in with Watashi</a></p></div>
{{end}}
</main>
</body></html>
`))

// boundedMap is a small map that forgets its oldest entries beyond max.
type boundedMap[V any] struct {
	mu    sync.Mutex
	max   int
	m     map[string]V
	order []string
}

func newBoundedMap[V any](max int) *boundedMap[V] {
	return &boundedMap[V]{max: max, m: map[string]V{}}
}

func (b *boundedMap[V]) put(k string, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.m) >= b.max && len(b.order) > 0 {
		delete(b.m, b.order[0])
		b.order = b.order[1:]
	}
	b.m[k] = v
	b.order = append(b.order, k)
}

func (b *boundedMap[V]) get(k string) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	return v, ok
}

func (b *boundedMap[V]) take(k string) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	if ok {
		delete(b.m, k)
		for i, o := range b.order {
			if o == k {
				b.order = append(b.order[:i], b.order[i+1:]...)
				break
			}
		}
	}
	return v, ok
}

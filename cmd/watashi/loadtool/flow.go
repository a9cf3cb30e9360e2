package loadtool

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/watashi-id/watashi/idp/walletsim"
)

// maxBody bounds what the tool reads of any answer.
const maxBody = 1 << 20

// stepError is a flow that stopped at step; its kind names the step and
// the HTTP status (or "network") so that the report groups failures.
type stepError struct {
	step   string
	status int
	err    error
}

func (e *stepError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %v", e.step, e.status, e.err)
}

func (e *stepError) kind() string {
	if e.status == 0 {
		return e.step + ":network"
	}
	return fmt.Sprintf("%s:%d", e.step, e.status)
}

func fail(step string, res *http.Response, err error) error {
	if res == nil {
		return &stepError{step: step, err: err}
	}
	return &stepError{step: step, status: res.StatusCode, err: err}
}

// errorKind classifies err for the report.
func errorKind(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.kind()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "timeout"
	}
	return "other"
}

// target is the provider as discovery describes it, and the client the
// tool acts as.
type target struct {
	issuer                                    string
	authorize, token, userinfo, introspection string
	clientID, secret                          string
	key                                       *ecdsa.PrivateKey // private_key_jwt when set
	transport                                 http.RoundTripper
}

// addrs gives every browser and wallet its own client address.
var addrs atomic.Uint32

func nextAddr() string {
	n := addrs.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

// forwarded is the reverse proxy in front of the provider: it names the
// client's address in X-Forwarded-For.
type forwarded struct {
	addr string
	rt   http.RoundTripper
}

func (f forwarded) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return f.rt.RoundTrip(r)
}

// client is an HTTP client from a new address; with a jar it is a new
// browser, which follows no redirect by itself.
func (t *target) client(jar bool) *http.Client {
	c := &http.Client{Transport: forwarded{addr: nextAddr(), rt: t.transport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if jar {
		c.Jar, _ = cookiejar.New(nil)
	}
	return c
}

func do(ctx context.Context, c *http.Client, step, method, target string, form url.Values, hdr ...string) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, nil, fail(step, nil, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, fail(step, nil, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return res, nil, fail(step, res, err)
	}
	return res, b, nil
}

func expect(res *http.Response, b []byte, step string, status ...int) error {
	for _, s := range status {
		if res.StatusCode == s {
			return nil
		}
	}
	return fail(step, res, fmt.Errorf("unexpected status: %.200s", b))
}

// location resolves res's Location against the request.
func location(res *http.Response, step string) (string, error) {
	u, err := res.Location()
	if err != nil {
		return "", fail(step, res, errors.New("no Location"))
	}
	return u.String(), nil
}

var (
	reCSRF    = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	reAppLink = regexp.MustCompile(`id="applink" href="([^"]+)"`)
	reStatus  = regexp.MustCompile(`data-status-url="([^"]+)"`)
	reFinish  = regexp.MustCompile(`<form id="finish" method="post" action="([^"]+)"`)
	reClaim   = regexp.MustCompile(`name="claim" value="([^"]+)"`)
	reTx      = regexp.MustCompile(`/login/tx/([^/"?]+)/`)
)

func scrape(re *regexp.Regexp, page []byte, step string, res *http.Response) (string, error) {
	m := re.FindSubmatch(page)
	if m == nil {
		return "", fail(step, res, fmt.Errorf("%s not on the page", re))
	}
	return html.UnescapeString(string(m[1])), nil
}

// tokens is a token response.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

// Scopes every flow asks for: the basic four facts and a refresh token.
var flowScopes = "openid offline_access name birthdate gender address"

// login is one full login of resident w from a new browser. proofing
// marks the resident's first login. It returns the tokens of the code
// exchange; userinfo is read with the access token.
func (t *target) login(ctx context.Context, w *walletsim.Wallet, proofing bool, extra ...string) (*tokens, error) {
	br := t.client(true)
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {t.clientID}, "response_type": {"code"}, "scope": {flowScopes},
		"redirect_uri": {RedirectURI}, "state": {"load-state"}, "nonce": {"load-nonce"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	res, b, err := do(ctx, br, "authorize", http.MethodGet, t.authorize+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, "authorize", http.StatusFound, http.StatusSeeOther); err != nil {
		return nil, err
	}
	next, err := location(res, "authorize")
	if err != nil {
		return nil, err
	}
	if proofing {
		next += "&purpose=proofing"
	}
	res, b, err = do(ctx, br, "login", http.MethodGet, next, nil)
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, "login", http.StatusSeeOther); err != nil {
		return nil, err
	}
	if next, err = location(res, "login"); err != nil {
		return nil, err
	}
	res, page, err := do(ctx, br, "login_page", http.MethodGet, next, nil)
	if err != nil {
		return nil, err
	}
	if err := expect(res, page, "login_page", http.StatusOK); err != nil {
		return nil, err
	}
	csrf, err := scrape(reCSRF, page, "login_page", res)
	if err != nil {
		return nil, err
	}
	appLink, err := scrape(reAppLink, page, "login_page", res)
	if err != nil {
		return nil, err
	}
	status, err := scrape(reStatus, page, "login_page", res)
	if err != nil {
		return nil, err
	}
	// Continue posts where the page's form does, as a browser would: the
	// action names the request too.
	finish, err := scrape(reFinish, page, "login_page", res)
	if err != nil {
		return nil, err
	}

	// The phone: its own address, no cookies.
	phone := t.client(false)
	tx, err := walletsim.Fetch(ctx, phone, appLink)
	if err != nil {
		return nil, walletErr("wallet_fetch", err)
	}
	sigs, err := w.SignBytes(tx.Bytes, walletsim.FormatJWS, tx.Certificates)
	if err != nil {
		return nil, fail("wallet_sign", nil, err)
	}
	if err := w.SubmitSignatures(ctx, phone, tx, walletsim.Submission{Signatures: sigs, ComparisonCode: tx.ComparisonCode, QRToken: tx.QRToken}); err != nil {
		return nil, walletErr("wallet_submit", err)
	}

	abs := func(p string) string {
		if strings.HasPrefix(p, "/") {
			return strings.TrimSuffix(t.issuer, "/") + p
		}
		return p
	}
	res, b, err = do(ctx, br, "status", http.MethodGet, abs(status), nil, "Accept", "application/json")
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, "status", http.StatusOK); err != nil {
		return nil, err
	}
	if !strings.Contains(string(b), `"state":"verified"`) {
		return nil, fail("status", res, fmt.Errorf("not verified: %.200s", b))
	}
	res, b, err = do(ctx, br, "finish", http.MethodPost, abs(finish), url.Values{"csrf_token": {csrf}}, "Origin", t.issuer)
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, "finish", http.StatusSeeOther); err != nil {
		return nil, err
	}
	if next, err = location(res, "finish"); err != nil {
		return nil, err
	}
	// Consent (a page the first time, remembered after), then the
	// callback, which sends the browser back to the RP with the code.
	var code string
	for hop := 0; code == "" && hop < 6; hop++ {
		if strings.HasPrefix(next, RedirectURI) {
			u, _ := url.Parse(next)
			if code = u.Query().Get("code"); code == "" || u.Query().Get("state") != "load-state" {
				return nil, fail("callback", res, fmt.Errorf("back at the RP without a code: %.200s", next))
			}
			break
		}
		step := "consent"
		if strings.Contains(next, "/callback") {
			step = "callback"
		}
		res, b, err = do(ctx, br, step, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		if res.StatusCode == http.StatusOK && step == "consent" {
			c, err := scrape(reCSRF, b, "consent_page", res)
			if err != nil {
				return nil, err
			}
			f := url.Values{"csrf_token": {c}, "action": {"allow"}}
			for _, m := range reClaim.FindAllSubmatch(b, -1) {
				f.Add("claim", html.UnescapeString(string(m[1])))
			}
			res, b, err = do(ctx, br, "consent_allow", http.MethodPost, next, f, "Origin", t.issuer)
			if err != nil {
				return nil, err
			}
			step = "consent_allow"
		}
		if err := expect(res, b, step, http.StatusFound, http.StatusSeeOther); err != nil {
			return nil, err
		}
		if next, err = location(res, step); err != nil {
			return nil, err
		}
	}
	if code == "" {
		return nil, fail("callback", res, errors.New("too many redirects"))
	}
	tok, err := t.tokenRequest(ctx, "token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {RedirectURI}})
	if err != nil {
		return nil, err
	}
	if tok.IDToken == "" || tok.RefreshToken == "" {
		return nil, fail("token", nil, errors.New("no ID token or refresh token"))
	}
	return tok, t.userinfoRequest(ctx, tok.AccessToken)
}

func walletErr(step string, err error) error {
	var we *walletsim.Error
	if errors.As(err, &we) && we.Status != 0 {
		return &stepError{step: step, status: we.Status, err: err}
	}
	return fail(step, nil, err)
}

// authenticate adds the client's credentials to a token, introspection
// or revocation request.
func (t *target) authenticate(form url.Values, aud string) ([]string, error) {
	if t.key == nil {
		return []string{"Authorization", "Basic " + basic(t.clientID, t.secret)}, nil
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: t.key, KeyID: clientKeyID}}, nil)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": t.clientID, "sub": t.clientID, "aud": aud,
		"jti": randomHex(16), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	jws, err := sig.Sign(claims)
	if err != nil {
		return nil, err
	}
	a, err := jws.CompactSerialize()
	if err != nil {
		return nil, err
	}
	form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	form.Set("client_assertion", a)
	return nil, nil
}

func basic(id, secret string) string {
	return base64Std(url.QueryEscape(id) + ":" + url.QueryEscape(secret))
}

func (t *target) tokenRequest(ctx context.Context, step string, form url.Values) (*tokens, error) {
	hdr, err := t.authenticate(form, t.token)
	if err != nil {
		return nil, fail(step, nil, err)
	}
	res, b, err := do(ctx, t.client(false), step, http.MethodPost, t.token, form, hdr...)
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, step, http.StatusOK); err != nil {
		return nil, err
	}
	var tok tokens
	if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
		return nil, fail(step, res, fmt.Errorf("no access token: %.200s", b))
	}
	return &tok, nil
}

func (t *target) refresh(ctx context.Context, rt string) (*tokens, error) {
	tok, err := t.tokenRequest(ctx, "refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err == nil && tok.RefreshToken == "" {
		return nil, fail("refresh", nil, errors.New("no new refresh token"))
	}
	return tok, err
}

func (t *target) userinfoRequest(ctx context.Context, at string) error {
	res, b, err := do(ctx, t.client(false), "userinfo", http.MethodGet, t.userinfo, nil, "Authorization", "Bearer "+at)
	if err != nil {
		return err
	}
	if err := expect(res, b, "userinfo", http.StatusOK); err != nil {
		return err
	}
	if !strings.Contains(string(b), `"birthdate"`) {
		return fail("userinfo", res, fmt.Errorf("no birthdate: %.200s", b))
	}
	return nil
}

func (t *target) introspect(ctx context.Context, at string) error {
	form := url.Values{"token": {at}}
	// The provider takes the token endpoint or the issuer as an
	// assertion's audience, whichever endpoint it is sent to.
	hdr, err := t.authenticate(form, t.issuer)
	if err != nil {
		return fail("introspection", nil, err)
	}
	res, b, err := do(ctx, t.client(false), "introspection", http.MethodPost, t.introspection, form, hdr...)
	if err != nil {
		return err
	}
	if err := expect(res, b, "introspection", http.StatusOK); err != nil {
		return err
	}
	if !strings.Contains(string(b), `"active":true`) {
		return fail("introspection", res, fmt.Errorf("not active: %.200s", b))
	}
	return nil
}

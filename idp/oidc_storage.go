package idp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/store"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// opStorage is op.Storage on the KV store. Every record lives in the
// store with a TTL, so that nodes share state and abandoned flows clean
// themselves up; nothing is kept in process memory but caches.
type opStorage struct{ s *Server }

var _ interface {
	op.Storage
	op.CanSetUserinfoFromRequest
	op.CanTerminateSessionFromRequest
} = (*opStorage)(nil)

// Store keys of the provider's records.
func authRequestKey(id string) string       { return "ar:" + id }
func codeKey(hash string) string            { return "code:" + hash }
func usedCodeKey(hash string) string        { return "usedcode:" + hash }
func subIndexKey(client, sub string) string { return "subidx:" + client + ":" + sub }

const (
	// casRetries bounds optimistic-update retries on one record.
	casRetries = 8
	// codeExchangeMargin keeps an auth request a little longer than its
	// code, for the exchange in flight when the code expires.
	codeExchangeMargin = 30 * time.Second
)

var (
	errAuthRequestNotFound = fmt.Errorf("idp: auth request not found or expired: %w", store.ErrNotFound)
	errAuthRequestBound    = errors.New("idp: auth request is bound to another browser")
	errAuthRequestDone     = errors.New("idp: auth request already completed")
	errCASContention       = errors.New("idp: record changed concurrently too often")
	// errUnchanged is returned by an updateAuthRequest fn that found
	// nothing to change: the record as read already answers, and a
	// compare-and-swap of a value with itself would only cost a round
	// trip.
	errUnchanged = errors.New("idp: auth request unchanged")
)

// newID returns 256 random bits, base64url: never contains ':' (the opaque
// access token is JWE("tokenID:sub")) nor '.' (our token separator).
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func newShortID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sha256Hex(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:])
}

// supportedScopes are the scopes Watashi understands at all; a client's
// configured scopes are intersected with them.
var supportedScopes = []string{oidc.ScopeOpenID, "profile", "name", "birthdate", "gender", "address", oidc.ScopeOfflineAccess}

// grantedScopes keeps openid and whatever this client may ask for. The
// library lets the built-in scopes (profile, address, offline_access,
// email, phone) through for every client, so this is where a client that
// was not configured for them loses them.
func grantedScopes(c *Client, requested []string) []string {
	out := make([]string, 0, len(requested))
	for _, sc := range requested {
		if slices.Contains(out, sc) {
			continue
		}
		if sc == oidc.ScopeOpenID || (slices.Contains(supportedScopes, sc) && slices.Contains(c.Scopes, sc)) {
			out = append(out, sc)
		}
	}
	return out
}

// validChallenge: an S256 challenge is base64url(SHA-256), 43 characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil
}

// CreateAuthRequest stores a validated /authorize request. By now the
// library has checked the client, the redirect URI and prompt; what it
// does not check is refused here and redirected to the RP.
func (st *opStorage) CreateAuthRequest(ctx context.Context, r *oidc.AuthRequest, hintSub string) (op.AuthRequest, error) {
	s := st.s
	c, err := s.client(ctx, r.ClientID)
	if err != nil {
		return nil, oidc.ErrInvalidRequestRedirectURI().WithDescription("unknown client")
	}
	if !slices.Contains(r.Scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("scope must contain openid")
	}
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	if !validChallenge(r.CodeChallenge) {
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge must be 43 base64url characters (S256)")
	}
	if r.ResponseMode != "" && r.ResponseMode != oidc.ResponseModeQuery {
		return nil, oidc.ErrInvalidRequest().WithDescription("only response_mode=query is supported")
	}
	rs := requestScope(ctx)
	if rs != nil && rs.requestURI {
		return nil, &oidc.Error{ErrorType: "request_uri_not_supported", Description: "request_uri is not supported"}
	}
	ar := &AuthRequest{
		ID:           newID(),
		ClientID:     c.ID,
		RedirectURI:  r.RedirectURI,
		State:        r.State,
		Nonce:        r.Nonce,
		Scopes:       grantedScopes(c, r.Scopes),
		ResponseMode: string(r.ResponseMode),
		Prompt:       []string(r.Prompt),
		MaxAge:       r.MaxAge,
		ACRValues:    []string(r.ACRValues),
		LoginHint:    r.LoginHint,
		HintSubject:  hintSub,
		Challenge:    r.CodeChallenge,
		CreatedAt:    s.now().UTC(),
	}
	for _, t := range r.UILocales {
		ar.UILocales = append(ar.UILocales, t.String())
	}
	if rs != nil && rs.hasClaims {
		raw, cr, err := parseClaimsParam(rs.claims)
		if err != nil {
			return nil, oidc.ErrInvalidRequest().WithDescription("%s", err.Error())
		}
		ar.Claims = raw
		// A sub the RP insists on (OIDC Core §5.5.1) is a hint that must
		// hold: the session must be that subject's, as for id_token_hint.
		if sub, ok := cr.Subject(); ok {
			if ar.HintSubject != "" && ar.HintSubject != sub {
				return nil, oidc.ErrInvalidRequest().WithDescription("the claims parameter and id_token_hint name different subjects")
			}
			ar.HintSubject = sub
		}
		// acr asked for as an essential claim (§5.5.1.1) is acr_values
		// that must be met.
		if values, essential, ok := cr.ACR(); ok && essential && len(ar.ACRValues) == 0 {
			ar.ACRValues = values
		}
	}
	b, err := json.Marshal(ar)
	if err != nil {
		return nil, err
	}
	if err := s.kv.Set(ctx, authRequestKey(ar.ID), b, s.opts.AuthRequestTTL); err != nil {
		return nil, fmt.Errorf("idp: store auth request: %w", err)
	}
	s.oidc.metrics.authRequests.Inc()
	return ar, nil
}

// parseClaimsParam validates the claims parameter (OIDC Core §5.5, with
// OIDC4IDA verified_claims) up front, so that a malformed one is an
// invalid_request at /authorize rather than a surprise at consent, and
// returns it compacted for storage. The consent package's messages name
// structure, never values, so they are safe to send to the RP.
func parseClaimsParam(v string) ([]byte, *consent.ClaimsRequest, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil, errors.New("claims parameter is empty")
	}
	cr, err := consent.ParseClaimsRequest([]byte(v))
	if err != nil {
		var ce *consent.Error
		if errors.As(err, &ce) {
			return nil, nil, errors.New(strings.TrimPrefix(ce.Error(), "consent: invalid_request: "))
		}
		return nil, nil, errors.New("claims parameter is malformed")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(v)); err != nil {
		return nil, nil, errors.New("claims parameter is malformed")
	}
	return buf.Bytes(), cr, nil
}

// authRequest loads a request; the error wraps store.ErrNotFound when it
// is missing or expired.
func (s *Server) authRequest(ctx context.Context, id string) (*AuthRequest, error) {
	ar, _, err := s.loadAuthRequest(ctx, id)
	return ar, err
}

func (s *Server) loadAuthRequest(ctx context.Context, id string) (*AuthRequest, []byte, error) {
	if id == "" {
		return nil, nil, errAuthRequestNotFound
	}
	// One provider request reads the same auth request several times
	// (binding check, the library's lookup, the code's CAS): decode once.
	rs := requestScope(ctx)
	if rs != nil && rs.ar != nil && rs.ar.ID == id {
		cp := *rs.ar
		return &cp, rs.arRaw, nil
	}
	b, err := s.kv.Get(ctx, authRequestKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errAuthRequestNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("idp: load auth request: %w", err)
	}
	if s.signin != nil {
		if ar := s.signin.authRequests.get(id, b, (*AuthRequest).clone); ar != nil {
			rs.remember(ar, b)
			return ar, b, nil
		}
	}
	ar := new(AuthRequest)
	if err := json.Unmarshal(b, ar); err != nil {
		return nil, nil, fmt.Errorf("idp: auth request record: %w", err)
	}
	if s.signin != nil {
		s.signin.authRequests.put(id, b, ar, (*AuthRequest).clone)
	}
	rs.remember(ar, b)
	return ar, b, nil
}

// clone is a deep copy (see decodedCache): every slice and pointer of
// AuthRequest. A field added to AuthRequest that holds a slice, map or
// pointer must be copied here too.
func (a *AuthRequest) clone() *AuthRequest {
	c := *a
	c.Scopes, c.Prompt, c.ACRValues, c.UILocales = slices.Clone(a.Scopes), slices.Clone(a.Prompt), slices.Clone(a.ACRValues), slices.Clone(a.UILocales)
	c.AMR, c.Granted, c.Claims = slices.Clone(a.AMR), slices.Clone(a.Granted), slices.Clone(a.Claims)
	if a.MaxAge != nil {
		m := *a.MaxAge
		c.MaxAge = &m
	}
	return &c
}

// updateAuthRequest applies fn with compare-and-swap, so that of two
// concurrent transitions (two callbacks, two completions) exactly one
// wins and the other sees the winner's state.
func (s *Server) updateAuthRequest(ctx context.Context, id string, fn func(*AuthRequest) error) (*AuthRequest, error) {
	for range casRetries {
		ar, old, err := s.loadAuthRequest(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(ar); errors.Is(err, errUnchanged) {
			return ar, nil
		} else if err != nil {
			return nil, err
		}
		b, err := json.Marshal(ar)
		if err != nil {
			return nil, err
		}
		ok, err := s.kv.CompareAndSwap(ctx, authRequestKey(id), old, b)
		if err != nil {
			return nil, fmt.Errorf("idp: update auth request: %w", err)
		}
		if ok {
			requestScope(ctx).remember(ar, b)
			return ar, nil
		}
		requestScope(ctx).remember(nil, nil) // stale: read the store again
	}
	return nil, errCASContention
}

// bindAuthRequest ties the request to one browser: bindingHash is the
// SHA-256 (hex) of that browser's binding cookie. The first binding wins;
// binding again with the same value is a no-op.
func (s *Server) bindAuthRequest(ctx context.Context, id, bindingHash string) error {
	if len(bindingHash) != sha256.Size*2 {
		return errors.New("idp: binding must be a hex SHA-256")
	}
	if _, err := hex.DecodeString(bindingHash); err != nil {
		return errors.New("idp: binding must be a hex SHA-256")
	}
	_, err := s.updateAuthRequest(ctx, id, func(ar *AuthRequest) error {
		switch {
		case ar.Binding == "":
			ar.Binding = bindingHash
			return nil
		case subtle.ConstantTimeCompare([]byte(ar.Binding), []byte(bindingHash)) == 1:
			// Already ours. A binding never changes once set, so the
			// record just read settles it without a write.
			return errUnchanged
		}
		return errAuthRequestBound
	})
	return err
}

// completeAuthRequest records a finished sign-in (and the consent given)
// on the request, once. The pairwise sub is computed here for the
// client's sector, and remembered so that end_session can map it back.
func (s *Server) completeAuthRequest(ctx context.Context, id string, a Authentication, granted []string) error {
	if a.AccountID == "" {
		return errors.New("idp: completion without an account")
	}
	var sub, clientID string
	_, err := s.updateAuthRequest(ctx, id, func(ar *AuthRequest) error {
		if ar.Completed {
			return errAuthRequestDone
		}
		c, err := s.client(ctx, ar.ClientID)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		ar.AccountID = a.AccountID
		ar.Subject = s.pairwiseSubject(c, a.AccountID)
		ar.ACR = a.ACR
		ar.AMR = slices.Clone(a.AMR)
		ar.AuthTime = a.Time.UTC()
		if a.Time.IsZero() {
			ar.AuthTime = now
		}
		// Keep what this request can release: consent.Effective re-checks
		// the granted claims against the request (scopes, the claims
		// parameter, age checks, verified_claims) under the client's
		// policy, so a caller can never widen it.
		req, err := consentRequest(c, ar.Scopes, ar.Claims)
		if err != nil {
			return err
		}
		ar.Granted = consent.Effective(&consent.Grant{Claims: granted}, req)
		ar.Completed = true
		ar.DoneAt = now
		sub, clientID = ar.Subject, ar.ClientID
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.kv.Set(ctx, subIndexKey(clientID, sub), []byte(a.AccountID), s.opts.RefreshTokenTTL); err != nil {
		s.log.WarnContext(ctx, "pairwise index not written; end_session cannot map this sub", "error", err)
	}
	return nil
}

// accountForSubject maps a pairwise sub of a client back to the account.
func (s *Server) accountForSubject(ctx context.Context, clientID, sub string) (string, error) {
	b, err := s.kv.Get(ctx, subIndexKey(clientID, sub))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// callbackURL is where the login UI sends the browser once the request is
// complete: the library's /authorize/callback, which mints the code.
func (s *Server) callbackURL(ctx context.Context, id string) string {
	if op.IssuerFromContext(ctx) == "" {
		ctx = op.ContextWithIssuer(ctx, s.opts.Issuer)
	}
	return op.AuthCallbackURL(s.oidc.provider)(ctx, id)
}

func (st *opStorage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	ar, err := st.s.authRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	return ar, nil
}

// SaveAuthCode records the code the callback minted. A request gets one
// code only: reloading or replaying the callback must not mint a second.
func (st *opStorage) SaveAuthCode(ctx context.Context, id, code string) error {
	s := st.s
	h := sha256Hex(code)
	ar, err := s.updateAuthRequest(ctx, id, func(ar *AuthRequest) error {
		if !ar.Completed {
			return oidc.ErrInteractionRequired().WithDescription("sign-in not completed")
		}
		if ar.CodeHash != "" {
			return oidc.ErrInvalidRequest().WithDescription("authorization already completed")
		}
		ar.CodeHash = h
		return nil
	})
	if err != nil {
		return err
	}
	ok, err := s.kv.SetNX(ctx, codeKey(h), []byte(id), s.opts.CodeTTL)
	if err != nil {
		return fmt.Errorf("idp: store code: %w", err)
	}
	if !ok {
		return oidc.ErrServerError().WithDescription("code collision")
	}
	// From now on the request only has to outlive its code: a sign-in that
	// finished just before AuthRequestTTL must still be exchangeable.
	if b, err := json.Marshal(ar); err == nil {
		if err := s.kv.Set(ctx, authRequestKey(id), b, s.opts.CodeTTL+codeExchangeMargin); err != nil {
			return fmt.Errorf("idp: store auth request: %w", err)
		}
	}
	return nil
}

// AuthRequestByCode is the single-use point of a code; the library calls
// it before PKCE and client authentication. Take (GETDEL) lets exactly one
// exchange through; a tombstone remembers the code for as long as what it
// minted may live, so that a replay revokes all of it (RFC 6749 §4.1.2).
func (st *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s := st.s
	h := sha256Hex(code)
	v, err := s.kv.Take(ctx, codeKey(h))
	if errors.Is(err, store.ErrNotFound) {
		if grant, err := s.kv.Get(ctx, usedCodeKey(h)); err == nil {
			s.oidc.metrics.reuse.WithLabelValues("code").Inc()
			s.log.WarnContext(ctx, "authorization code replayed; revoking its grant")
			if err := s.revokeGrant(ctx, string(grant)); err != nil {
				s.log.ErrorContext(ctx, "revoking a replayed code's grant failed", "error", err)
			}
			return nil, errors.New("authorization code already used; its tokens are revoked")
		}
		return nil, errors.New("unknown or expired authorization code")
	}
	if err != nil {
		return nil, fmt.Errorf("idp: take code: %w", err)
	}
	id := string(v)
	ar, err := s.authRequest(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ar.Completed || subtle.ConstantTimeCompare([]byte(ar.CodeHash), []byte(h)) != 1 {
		return nil, errors.New("authorization code does not match its request")
	}
	if err := s.kv.Set(ctx, usedCodeKey(h), []byte(ar.ID), s.grantTTL(ar)); err != nil {
		return nil, fmt.Errorf("idp: code tombstone: %w", err)
	}
	noteClient(ctx, ar.ClientID)
	return ar, nil
}

// DeleteAuthRequest runs after the tokens are minted. The code tombstone
// stays.
func (st *opStorage) DeleteAuthRequest(ctx context.Context, id string) error {
	return st.s.kv.Delete(ctx, authRequestKey(id))
}

func (st *opStorage) Health(ctx context.Context) error { return st.s.kv.Ping(ctx) }

// grantTTL is how long what a request mints may live: the refresh family
// when offline_access was granted, else the access token.
func (s *Server) grantTTL(ar *AuthRequest) time.Duration {
	if slices.Contains(ar.Scopes, oidc.ScopeOfflineAccess) {
		return max(s.opts.RefreshTokenTTL, s.opts.AccessTokenTTL)
	}
	return s.opts.AccessTokenTTL
}

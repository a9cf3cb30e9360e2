package passkey

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/session"
	"github.com/watashi-id/watashi/idp/web"
)

// Rate limits per client address: each begin stores a ceremony, each
// finish verifies a signature.
const (
	beginPerIP  = 30
	finishPerIP = 30
	rateWindow  = time.Minute
	// maxBody bounds a finish request: a credential is a few kilobytes,
	// an attestation with certificates a few more.
	maxBody = 64 << 10
)

// Error codes of the JSON answers; the page shows passkey.error.<code>.
const (
	codeBadRequest        = "bad_request"
	codeCSRF              = "csrf"
	codeRateLimited       = "rate_limited"
	codeExpired           = "expired"
	codeUnknownRequest    = "unknown_request"
	codeJPKIRequired      = "jpki_required"
	codeNotVerified       = "not_verified"
	codeUnknownPasskey    = "unknown_passkey"
	codeDisabled          = "disabled"
	codeSignedOut         = "signed_out"
	codeProofNeeded       = "proof_needed"
	codeModelRefused      = "model_refused"
	codeAlreadyRegistered = "already_registered"
	codeLimit             = "limit"
	codeServerError       = "server_error"
)

// apiError answers a ceremony call with a code and the message the page
// shows in the resident's language; cause is logged, never sent.
func (h *Handler) apiError(w http.ResponseWriter, r *http.Request, kind string, status int, code string, cause error) {
	ctx := r.Context()
	h.outcomes.WithLabelValues(kind, code).Inc()
	if status >= 500 {
		h.log.ErrorContext(ctx, "passkey ceremony failed", "kind", kind, "code", code, "error", cause)
	} else if cause != nil {
		h.log.InfoContext(ctx, "passkey ceremony refused", "kind", kind, "code", code, "error", cause)
	}
	lang := h.web.Lang(w, r, nil)
	web.WriteJSON(w, status, map[string]string{"error": code, "message": h.web.Message(lang, "passkey.error."+code)})
}

// call is what every ceremony endpoint checks first: our own page sent
// it (CSRF), the address is within its rate, and the body is bounded JSON.
func (h *Handler) call(w http.ResponseWriter, r *http.Request, kind, bucket string, limit int, into any) bool {
	if !h.web.CheckCSRF(r) {
		h.apiError(w, r, kind, http.StatusForbidden, codeCSRF, nil)
		return false
	}
	if !h.web.Allow(r.Context(), bucket, h.web.RateKey(r), limit, rateWindow) {
		h.apiError(w, r, kind, http.StatusTooManyRequests, codeRateLimited, nil)
		return false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(into)
	}
	if err != nil {
		h.apiError(w, r, kind, http.StatusBadRequest, codeBadRequest, err)
		return false
	}
	return true
}

// beginRequest starts a ceremony.
type beginRequest struct {
	// Request is the authorization request: the one a sign-in answers, or
	// the one a registration offered after sign-in returns to.
	Request string `json:"request,omitempty"`
}

// beginResponse carries the options for navigator.credentials.
type beginResponse struct {
	Ceremony  string `json:"ceremony"`
	PublicKey any    `json:"publicKey"`
}

// finishRequest carries the browser's PublicKeyCredential, as JSON.
type finishRequest struct {
	Ceremony   string          `json:"ceremony"`
	Credential json.RawMessage `json:"credential"`
}

// finishResponse says where the browser goes next.
type finishResponse struct {
	Redirect string `json:"redirect"`
}

// requestFor loads a sign-in's authorization request and checks that this
// browser started it and that a passkey may answer it.
func (h *Handler) requestFor(ctx context.Context, id, binding string) (*authreq.AuthRequest, string, error) {
	if id == "" {
		return nil, codeUnknownRequest, errors.New("no request")
	}
	ar, err := h.requests.Load(ctx, id)
	switch {
	case err != nil && !errors.Is(err, authreq.ErrNotFound):
		return nil, codeServerError, err
	case err != nil, ar.Completed, !ar.BoundTo(binding):
		return nil, codeUnknownRequest, err
	case session.NeedsJPKI(ar):
		return nil, codeJPKIRequired, nil
	}
	return ar, "", nil
}

func (h *Handler) handleLoginBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req beginRequest
	if !h.call(w, r, kindLogin, "passkey_begin", beginPerIP, &req) {
		return
	}
	binding := authreq.BrowserBinding(h.web, r)
	if _, code, err := h.requestFor(ctx, req.Request, binding); code != "" {
		h.apiError(w, r, kindLogin, statusOf(code), code, err)
		return
	}
	assertion, data, err := h.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		h.apiError(w, r, kindLogin, http.StatusInternalServerError, codeServerError, err)
		return
	}
	id, err := h.cer.start(ctx, &ceremony{Kind: kindLogin, Binding: binding, Request: req.Request, Data: *data})
	if err != nil {
		h.apiError(w, r, kindLogin, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, beginResponse{Ceremony: id, PublicKey: assertion.Response})
}

// statusOf maps an error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case codeServerError:
		return http.StatusServiceUnavailable
	case codeJPKIRequired, codeProofNeeded, codeModelRefused, codeDisabled:
		return http.StatusForbidden
	case codeSignedOut:
		return http.StatusUnauthorized
	case codeAlreadyRegistered, codeLimit:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// passkeyUser is an account as go-webauthn sees it: the handle and the
// credentials that may sign in.
type passkeyUser struct {
	handle      []byte
	name        string
	displayName string
	creds       []webauthn.Credential
}

func (u *passkeyUser) WebAuthnID() []byte                         { return u.handle }
func (u *passkeyUser) WebAuthnName() string                       { return u.name }
func (u *passkeyUser) WebAuthnDisplayName() string                { return u.displayName }
func (u *passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// credentialOf turns a stored passkey into go-webauthn's record. be is
// the backup-eligible flag to present: the stored one, or at sign-in the
// assertion's, so that a changed flag reaches our own check (which
// disables the credential) instead of failing inside the library.
func credentialOf(p *account.Passkey, be bool) webauthn.Credential {
	flags := protocol.FlagUserPresent | protocol.FlagUserVerified
	if be {
		flags |= protocol.FlagBackupEligible
	}
	if p.BackupState && be {
		flags |= protocol.FlagBackupState
	}
	var transports []protocol.AuthenticatorTransport
	for _, t := range p.Transports {
		transports = append(transports, protocol.AuthenticatorTransport(t))
	}
	return webauthn.Credential{
		ID: p.ID, PublicKey: p.PublicKey, AttestationType: p.AttestationType, AttestationFormat: p.AttestationFormat,
		Transport: transports, Flags: webauthn.NewCredentialFlags(flags),
		Authenticator: webauthn.Authenticator{AAGUID: p.AAGUID, SignCount: p.SignCount},
	}
}

// Errors that disable a credential.
var (
	errCounterRegressed = errors.New("passkey: signature counter went back")
	errFlagsChanged     = errors.New("passkey: backup flags contradict the registration")
	errDisabled         = errors.New("passkey: credential disabled")
)

// invalidBackupState is go-webauthn's answer to an assertion whose
// backup-state flag is set without backup eligibility. It checks this
// after the signature, so the authenticator really said so: the
// credential is disabled like one whose flags changed.
const invalidBackupState = "Backup State Flag is true but Backup Eligible flag is false which is invalid"

func (h *Handler) handleLoginFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req finishRequest
	if !h.call(w, r, kindLogin, "passkey_finish", finishPerIP, &req) {
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(req.Credential)
	if err != nil {
		h.apiError(w, r, kindLogin, http.StatusBadRequest, codeBadRequest, err)
		return
	}
	binding := authreq.BrowserBinding(h.web, r)
	c, err := h.cer.peek(ctx, req.Ceremony, kindLogin, binding)
	if err != nil {
		code, status := codeExpired, http.StatusBadRequest
		if !errors.Is(err, errCeremony) {
			code, status = codeServerError, http.StatusServiceUnavailable
		}
		h.apiError(w, r, kindLogin, status, code, err)
		return
	}
	ar, code, err := h.requestFor(ctx, c.Request, binding)
	if code != "" {
		h.apiError(w, r, kindLogin, statusOf(code), code, err)
		return
	}
	// Everything free is checked: now the challenge is spent, whatever
	// the assertion turns out to be.
	if err := h.cer.take(ctx, req.Ceremony); err != nil {
		code, status := codeExpired, http.StatusBadRequest
		if !errors.Is(err, errCeremony) {
			code, status = codeServerError, http.StatusServiceUnavailable
		}
		h.apiError(w, r, kindLogin, status, code, err)
		return
	}
	acct, err := h.accounts.ByPasskeyHandle(ctx, parsed.Response.UserHandle)
	if err != nil {
		code, status := codeUnknownPasskey, http.StatusBadRequest
		if !errors.Is(err, account.ErrNotFound) {
			code, status = codeServerError, http.StatusServiceUnavailable
		}
		h.apiError(w, r, kindLogin, status, code, err)
		return
	}
	assertedBE := parsed.Response.AuthenticatorData.Flags.HasBackupEligible()
	user := &passkeyUser{handle: acct.PasskeyHandle}
	var stored *account.Passkey
	for i := range acct.Passkeys {
		p := &acct.Passkeys[i]
		if p.Disabled != "" {
			continue // as if removed
		}
		user.creds = append(user.creds, credentialOf(p, assertedBE))
		if bytes.Equal(p.ID, parsed.RawID) {
			stored = p
		}
	}
	if stored == nil {
		code := codeUnknownPasskey
		if p, ok := acct.Passkey(parsed.RawID); ok && p.Disabled != "" {
			code = codeDisabled
		}
		h.apiError(w, r, kindLogin, statusOf(code), code, errors.New("the credential is not an active passkey of the handle's account"))
		return
	}
	_, cred, err := h.wa.ValidatePasskeyLogin(func(_, _ []byte) (webauthn.User, error) { return user, nil }, c.Data, parsed)
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr) && perr.Details == invalidBackupState:
		h.disable(ctx, acct.ID, stored.ID, account.PasskeyFlagsInconsistent)
		h.apiError(w, r, kindLogin, http.StatusForbidden, codeDisabled, errFlagsChanged)
		return
	case err != nil:
		h.apiError(w, r, kindLogin, http.StatusBadRequest, codeNotVerified, err)
		return
	case cred.Authenticator.CloneWarning:
		h.disable(ctx, acct.ID, stored.ID, account.PasskeyCounterRegressed)
		h.apiError(w, r, kindLogin, http.StatusForbidden, codeDisabled, errCounterRegressed)
		return
	case assertedBE != stored.BackupEligible:
		h.disable(ctx, acct.ID, stored.ID, account.PasskeyFlagsInconsistent)
		h.apiError(w, r, kindLogin, http.StatusForbidden, codeDisabled, errFlagsChanged)
		return
	}
	now := h.web.Now().UTC()
	counter := parsed.Response.AuthenticatorData.Counter
	backedUp := parsed.Response.AuthenticatorData.Flags.HasBackupState()
	updated, err := h.accounts.UpdatePasskey(ctx, acct.ID, stored.ID, func(p *account.Passkey) error {
		switch {
		case p.Disabled != "":
			return errDisabled
		case (counter != 0 || p.SignCount != 0) && counter <= p.SignCount:
			// Another sign-in with this key got here first with a
			// counter as high: two copies of the key are in use.
			return errCounterRegressed
		}
		p.SignCount, p.BackupState, p.LastUsedAt = counter, backedUp, now
		return nil
	})
	switch {
	case errors.Is(err, errCounterRegressed):
		h.disable(ctx, acct.ID, stored.ID, account.PasskeyCounterRegressed)
		h.apiError(w, r, kindLogin, http.StatusForbidden, codeDisabled, err)
		return
	case errors.Is(err, errDisabled), errors.Is(err, account.ErrPasskeyNotFound):
		h.apiError(w, r, kindLogin, http.StatusForbidden, codeDisabled, err)
		return
	case err != nil:
		h.apiError(w, r, kindLogin, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	p, _ := updated.Passkey(stored.ID)
	amr := []string{session.AMRUser, session.AMRHardwareKey}
	if p.Synced() {
		amr[1] = session.AMRSoftwareKey
	}
	ref := "passkey:" + base64.RawURLEncoding.EncodeToString(stored.ID)
	client := ar.ClientID
	if client == clients.SelfServiceID {
		client = ""
	}
	if _, err := h.sessions.Begin(ctx, w, authreq.Authentication{AccountID: acct.ID, ACR: session.ACRPasskey, AMR: amr, Time: now,
		Method: ref, Authenticator: ref}, client); err != nil {
		h.apiError(w, r, kindLogin, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	h.outcomes.WithLabelValues(kindLogin, "ok").Inc()
	h.log.InfoContext(ctx, "signed in with a passkey", logref.Account(acct.ID), "amr", amr)
	web.WriteJSON(w, http.StatusOK, finishResponse{Redirect: h.afterSignIn(ctx, ar)})
}

// disable marks a credential unusable for good, for the reason given; the
// account page tells the resident.
func (h *Handler) disable(ctx context.Context, accountID string, cred []byte, reason string) {
	now := h.web.Now().UTC()
	_, err := h.accounts.UpdatePasskey(ctx, accountID, cred, func(p *account.Passkey) error {
		if p.Disabled == "" {
			p.Disabled, p.DisabledAt = reason, now
		}
		return nil
	})
	if err != nil {
		h.log.ErrorContext(ctx, "passkey not disabled", logref.Account(accountID), "reason", reason, "error", err)
		return
	}
	h.log.WarnContext(ctx, "passkey disabled", logref.Account(accountID), "reason", reason)
}

// afterSignIn is where a signed-in browser goes: consent, or the
// provider's own page that asked, whose request is then spent.
func (h *Handler) afterSignIn(ctx context.Context, ar *authreq.AuthRequest) string {
	if ar.Return != "" {
		if err := h.requests.Delete(ctx, ar.ID); err != nil {
			h.log.WarnContext(ctx, "account sign-in request not deleted", "error", err)
		}
	}
	return ar.AfterSignIn()
}

package passkey

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/watashi-id/watashi/idp/account"
	"github.com/watashi-id/watashi/idp/authreq"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/logref"
	"github.com/watashi-id/watashi/idp/web"
)

// accountPath is the account page, where a registration started there
// returns.
const accountPath = "/account"

// AddedParam is the account page's query flag after a passkey was added.
const AddedParam = "passkey_added"

func (h *Handler) handleRegisterBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req beginRequest
	if !h.call(w, r, kindRegister, "passkey_begin", beginPerIP, &req) {
		return
	}
	sess, ok := h.sessions.Current(r)
	if !ok {
		h.apiError(w, r, kindRegister, http.StatusUnauthorized, codeSignedOut, nil)
		return
	}
	if !sess.JPKIRecent(h.web.Now(), h.recent) {
		h.apiError(w, r, kindRegister, http.StatusForbidden, codeProofNeeded, nil)
		return
	}
	binding := authreq.EnsureBinding(h.web, w, r)
	if req.Request != "" {
		// Offered after a sign-in: the registration goes back to that
		// request, which must be this browser's.
		ar, err := h.requests.Load(ctx, req.Request)
		if err != nil || ar.Completed || !ar.BoundTo(binding) {
			code, status := codeUnknownRequest, http.StatusBadRequest
			if err != nil && !errors.Is(err, authreq.ErrNotFound) {
				code, status = codeServerError, http.StatusServiceUnavailable
			}
			h.apiError(w, r, kindRegister, status, code, err)
			return
		}
	}
	handle, err := h.accounts.PasskeyHandle(ctx, sess.AccountID)
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	acct, err := h.accounts.Get(ctx, sess.AccountID)
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	if len(acct.Passkeys) >= account.MaxPasskeys {
		h.apiError(w, r, kindRegister, http.StatusConflict, codeLimit, nil)
		return
	}
	lang := h.web.Lang(w, r, nil)
	user := &passkeyUser{handle: handle, name: h.web.Message(lang, "passkey.user_name"), displayName: h.web.Message(lang, "passkey.user_name")}
	// Every credential of the account, disabled ones too: the same
	// authenticator is not registered twice.
	var exclude []protocol.CredentialDescriptor
	for i := range acct.Passkeys {
		c := credentialOf(&acct.Passkeys[i], acct.Passkeys[i].BackupEligible)
		exclude = append(exclude, c.Descriptor())
	}
	creation, data, err := h.wa.BeginRegistration(user,
		webauthn.WithExclusions(exclude),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithConveyancePreference(h.attest))
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusInternalServerError, codeServerError, err)
		return
	}
	c := &ceremony{Kind: kindRegister, Binding: binding, Account: sess.AccountID, Request: req.Request, Data: *data}
	if req.Request == "" {
		c.Next = accountPath + "?" + url.Values{web.LangParam: {lang}, AddedParam: {"1"}}.Encode()
	}
	id, err := h.cer.start(ctx, c)
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, beginResponse{Ceremony: id, PublicKey: creation.Response})
}

func (h *Handler) handleRegisterFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req finishRequest
	if !h.call(w, r, kindRegister, "passkey_finish", finishPerIP, &req) {
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(req.Credential)
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusBadRequest, codeBadRequest, err)
		return
	}
	c, err := h.cer.peek(ctx, req.Ceremony, kindRegister, authreq.BrowserBinding(h.web, r))
	if err != nil {
		code, status := codeExpired, http.StatusBadRequest
		if !errors.Is(err, errCeremony) {
			code, status = codeServerError, http.StatusServiceUnavailable
		}
		h.apiError(w, r, kindRegister, status, code, err)
		return
	}
	// The session that began must still be here, the same resident, with
	// a JPKI sign-in still recent.
	sess, ok := h.sessions.Current(r)
	if !ok || sess.AccountID != c.Account {
		h.apiError(w, r, kindRegister, http.StatusUnauthorized, codeSignedOut, nil)
		return
	}
	if !sess.JPKIRecent(h.web.Now(), h.recent) {
		h.apiError(w, r, kindRegister, http.StatusForbidden, codeProofNeeded, nil)
		return
	}
	if err := h.cer.take(ctx, req.Ceremony); err != nil {
		code, status := codeExpired, http.StatusBadRequest
		if !errors.Is(err, errCeremony) {
			code, status = codeServerError, http.StatusServiceUnavailable
		}
		h.apiError(w, r, kindRegister, status, code, err)
		return
	}
	acct, err := h.accounts.Get(ctx, c.Account)
	if err != nil {
		h.apiError(w, r, kindRegister, http.StatusServiceUnavailable, codeServerError, err)
		return
	}
	user := &passkeyUser{handle: acct.PasskeyHandle}
	cred, err := h.wa.CreateCredential(user, c.Data, parsed)
	if err != nil {
		code, status := codeNotVerified, http.StatusBadRequest
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Type == protocol.ErrMetadata.Type {
			code, status = codeModelRefused, http.StatusForbidden
		}
		h.apiError(w, r, kindRegister, status, code, err)
		return
	}
	if err := h.policy.Check(cred.Authenticator.AAGUID); err != nil {
		h.apiError(w, r, kindRegister, http.StatusForbidden, codeModelRefused, err)
		return
	}
	lang := h.web.Lang(w, r, nil)
	now := h.web.Now().UTC()
	p := account.Passkey{
		ID: cred.ID, PublicKey: cred.PublicKey, AAGUID: cred.Authenticator.AAGUID,
		AttestationFormat: cred.AttestationFormat, AttestationType: cred.AttestationType,
		SignCount: cred.Authenticator.SignCount, BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
		Name: fmt.Sprintf(h.web.Message(lang, "passkey.default_name"), len(acct.Passkeys)+1), CreatedAt: now,
	}
	for _, t := range cred.Transport {
		if s := string(t); len(s) <= 32 && !slices.Contains(p.Transports, s) && len(p.Transports) < 8 {
			p.Transports = append(p.Transports, s)
		}
	}
	if _, err := h.accounts.AddPasskey(ctx, acct.ID, p); err != nil {
		code, status := codeServerError, http.StatusServiceUnavailable
		switch {
		case errors.Is(err, account.ErrConflict):
			code, status = codeAlreadyRegistered, http.StatusConflict
		case errors.Is(err, account.ErrPasskeyLimit):
			code, status = codeLimit, http.StatusConflict
		case errors.Is(err, account.ErrPasskeyInvalid):
			code, status = codeNotVerified, http.StatusBadRequest
		}
		h.apiError(w, r, kindRegister, status, code, err)
		return
	}
	h.outcomes.WithLabelValues(kindRegister, "ok").Inc()
	h.log.InfoContext(ctx, "passkey added", logref.Account(acct.ID), "synced", p.Synced(), "attestation", p.AttestationFormat)
	if h.events != nil {
		e := events.Event{Kind: events.CredentialChanged, AccountID: acct.ID, Credential: &events.Credential{
			Type: "passkey", Change: "create", Ref: base64.RawURLEncoding.EncodeToString(p.ID)}}
		if err := h.events.Publish(ctx, e); err != nil {
			// The passkey is added; only the notice of it is lost.
			h.log.ErrorContext(ctx, "event not published", "kind", string(e.Kind), "error", err)
		}
	}
	next := c.Next
	if c.Request != "" {
		next = accountPath
		if ar, err := h.requests.Load(ctx, c.Request); err == nil && !ar.Completed {
			next = h.afterSignIn(ctx, ar)
		}
	}
	web.WriteJSON(w, http.StatusOK, finishResponse{Redirect: next})
}

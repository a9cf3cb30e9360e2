package authreq

import (
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/watashi-id/watashi/consent"
)

// AuthRequest is the stored form of one /authorize request. It implements
// the library's op.AuthRequest, so that the token endpoint can mint from
// it.
type AuthRequest struct {
	ID           string   `json:"id"`
	ClientID     string   `json:"client_id"`
	RedirectURI  string   `json:"redirect_uri"`
	State        string   `json:"state,omitempty"`
	Nonce        string   `json:"nonce,omitempty"`
	Scopes       []string `json:"scopes"`
	ResponseMode string   `json:"response_mode,omitempty"`
	Prompt       []string `json:"prompt,omitempty"`
	MaxAge       *uint    `json:"max_age,omitempty"`
	ACRValues    []string `json:"acr_values,omitempty"`
	UILocales    []string `json:"ui_locales,omitempty"`
	LoginHint    string   `json:"login_hint,omitempty"`
	// MinACR is the weakest sign-in the client's tier accepts ("" for no
	// tier): unlike acr_values, the RP cannot waive it.
	MinACR string `json:"min_acr,omitempty"`
	// HintSubject is the sub the RP insists on (id_token_hint, or sub in
	// the claims parameter): only that resident's session may answer.
	HintSubject string `json:"hint_subject,omitempty"`
	// Challenge is the PKCE S256 challenge; plain is never accepted.
	Challenge string `json:"code_challenge"`
	// Claims is the `claims` request parameter (OIDC Core §5.5), validated
	// at /authorize and kept typed: later releases resolve it again with
	// the scopes of the access token at hand, which a refresh may narrow,
	// and the client's policy of the day.
	Claims *consent.ClaimsRequest `json:"claims,omitempty"`
	// Requested is what the scopes and the claims parameter ask for under
	// the client's policy, resolved once at /authorize: what the login
	// page, the wallet and the consent screen show, and what completion
	// may grant.
	Requested consent.Requested `json:"requested,omitzero"`
	CreatedAt time.Time         `json:"created_at"`
	// Return, for the provider's own account pages, is where the browser
	// goes once signed in; such a request has no RP and never gets a code.
	Return string `json:"return,omitempty"`

	// Binding is the SHA-256 (hex) of the browser-binding cookie of the
	// browser that started the login; only that browser may finish it.
	Binding string `json:"binding,omitempty"`

	// Set once the resident has signed in and consented (Complete).
	AccountID string    `json:"account_id,omitempty"`
	Subject   string    `json:"sub,omitempty"` // pairwise for the client's sector
	ACR       string    `json:"acr,omitempty"`
	AMR       []string  `json:"amr,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	// SessionID is the internal ID of the SSO session that completed the
	// request: the grant keeps it, so that ending the session revokes
	// the tokens, and the ID token's sid derives from it.
	SessionID string `json:"session_id,omitempty"`
	// Authenticator is the session's (Authentication.Authenticator).
	Authenticator string `json:"authenticator,omitempty"`
	// Method is the session's (Authentication.Method): the grant keeps
	// it, so that a refresh after the operator blocked the token label
	// that signed in is refused.
	Method string `json:"method,omitempty"`
	// Granted lists the claims the resident consented to for this request.
	Granted   []string  `json:"granted,omitempty"`
	Completed bool      `json:"done,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	CodeHash  string    `json:"code_hash,omitempty"` // set once: a second code is refused

	// raw is the record as read or written by this node, the expected
	// value of an UpdateLoaded's first compare-and-swap.
	raw []byte
}

func (a *AuthRequest) GetID() string          { return a.ID }
func (a *AuthRequest) GetACR() string         { return a.ACR }
func (a *AuthRequest) GetAMR() []string       { return a.AMR }
func (a *AuthRequest) GetAudience() []string  { return []string{a.ClientID} }
func (a *AuthRequest) GetAuthTime() time.Time { return a.AuthTime }
func (a *AuthRequest) GetClientID() string    { return a.ClientID }
func (a *AuthRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.Challenge, Method: oidc.CodeChallengeMethodS256}
}
func (a *AuthRequest) GetNonce() string                   { return a.Nonce }
func (a *AuthRequest) GetRedirectURI() string             { return a.RedirectURI }
func (a *AuthRequest) GetResponseType() oidc.ResponseType { return oidc.ResponseTypeCode }
func (a *AuthRequest) GetResponseMode() oidc.ResponseMode { return oidc.ResponseMode(a.ResponseMode) }
func (a *AuthRequest) GetScopes() []string                { return a.Scopes }
func (a *AuthRequest) GetState() string                   { return a.State }
func (a *AuthRequest) GetSubject() string                 { return a.Subject }
func (a *AuthRequest) Done() bool                         { return a.Completed }

// HasPrompt reports whether the RP sent prompt=p.
func (a *AuthRequest) HasPrompt(p string) bool { return slices.Contains(a.Prompt, p) }

// Authentication is what a finished sign-in proves about the resident: the
// sign-in produces it, the session keeps it, a completed request records
// it as acr, amr and auth_time.
type Authentication struct {
	AccountID string `json:"account_id"`
	// ACR is "aal3" for a JPKI certificate sign-in (the Digital Agency's
	// value for a hardware-bound key with PIN or biometrics).
	ACR string `json:"acr"`
	// AMR are RFC 8176 values: "hwk" (hardware key), "pin" or "user"
	// (user presence or verification), "sc" (smart card).
	AMR  []string  `json:"amr"`
	Time time.Time `json:"auth_time"`
	// SessionID is the session carrying the sign-in (session.Session.ID),
	// "" until a session holds it.
	SessionID string `json:"session_id,omitempty"`
	// Method says how the resident signed in, for the resident's own
	// eyes (notification mail): "jpki:<token label>" or
	// "passkey:<passkey id>".
	Method string `json:"method,omitempty"`
	// Authenticator names what signed in inside the account: "jpki:<link>"
	// (the authentication certificate's link) or "passkey:<id>".
	// Removing that authenticator ends the sessions it started.
	Authenticator string `json:"authenticator,omitempty"`
}

// Completion is what Complete records: the sign-in, the subject the RP
// will see and the claims the resident let this request release.
type Completion struct {
	Authentication
	Subject string
	Granted []string
}

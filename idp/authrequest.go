package idp

import (
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// AuthRequest is the stored form of one /authorize request, from creation
// until its code is exchanged. It implements op.AuthRequest. Its lifetime
// (Options.AuthRequestTTL, default 10 minutes) is deliberately longer than
// the sign-in transaction's, so that a slow card tap and PIN entry never
// outlive the request they belong to (DESIGN.md §6).
type AuthRequest struct {
	ID           string    `json:"id"`
	ClientID     string    `json:"client_id"`
	RedirectURI  string    `json:"redirect_uri"`
	State        string    `json:"state,omitempty"`
	Nonce        string    `json:"nonce,omitempty"`
	Scopes       []string  `json:"scopes"`
	ResponseMode string    `json:"response_mode,omitempty"`
	Prompt       []string  `json:"prompt,omitempty"`
	MaxAge       *uint     `json:"max_age,omitempty"`
	ACRValues    []string  `json:"acr_values,omitempty"`
	UILocales    []string  `json:"ui_locales,omitempty"`
	LoginHint    string    `json:"login_hint,omitempty"`
	HintSubject  string    `json:"hint_subject,omitempty"` // sub of a valid id_token_hint
	Challenge    string    `json:"code_challenge"`         // always S256
	Claims       []byte    `json:"claims,omitempty"`       // raw `claims` request parameter (OIDC Core §5.5)
	CreatedAt    time.Time `json:"created_at"`

	// Binding is the SHA-256 (hex) of the browser-binding cookie of the
	// browser that started the login; only that browser may finish it.
	Binding string `json:"binding,omitempty"`

	// Set when the resident has signed in (Complete).
	AccountID string    `json:"account_id,omitempty"`
	Subject   string    `json:"sub,omitempty"` // pairwise for this client's sector
	ACR       string    `json:"acr,omitempty"`
	AMR       []string  `json:"amr,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	// Granted lists the claims the resident consented to for this request.
	Granted   []string  `json:"granted,omitempty"`
	Completed bool      `json:"done,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	CodeHash  string    `json:"code_hash,omitempty"` // set once: a second code is refused
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
func (a *AuthRequest) HasPrompt(p string) bool {
	for _, x := range a.Prompt {
		if x == p {
			return true
		}
	}
	return false
}

// Authentication is what a finished sign-in proves about the resident. The
// login flow produces it; the provider turns it into acr, amr, auth_time
// and the pairwise sub.
type Authentication struct {
	AccountID string
	// ACR is "aal3" for a JPKI certificate sign-in (the Digital Agency's
	// value for a hardware-bound key with PIN or biometrics).
	ACR string
	// AMR are RFC 8176 values: "hwk" (hardware key), "pin" or "user"
	// (user presence/verification), "sc" (smart card), "mfa".
	AMR  []string
	Time time.Time
}

package events

import (
	"errors"
	"fmt"
	"time"
)

// Kind names what happened.
type Kind string

const (
	// SignedIn: a sign-in finished. SessionID, ClientIDs (the relying
	// party asking, if any), Method.
	SignedIn Kind = "signed_in"
	// SessionEnded: a session ended. SessionID, ClientIDs that received
	// tokens or ID tokens in it, Reason.
	SessionEnded Kind = "session_ended"
	// CredentialChanged: an authenticator was added, removed or blocked.
	// Credential.
	CredentialChanged Kind = "credential_changed"
	// FactsStale: the proofing certificate was found revoked, so the
	// facts must be proved again.
	FactsStale Kind = "facts_stale"
	// ConsentWithdrawn: the resident withdrew consent for ClientIDs[0].
	ConsentWithdrawn Kind = "consent_withdrawn"
)

// Reasons for SessionEnded.
const (
	ReasonLogout               = "logout"
	ReasonEverywhere           = "sign_out_everywhere"
	ReasonAuthenticatorRemoved = "authenticator_removed"
	ReasonBlocked              = "blocked"
	ReasonConsentWithdrawn     = "consent_withdrawn"
	// ReasonExpired is not emitted when a session's TTL runs out: the
	// store forgets it without anyone noticing.
	ReasonExpired = "expired"
)

// Credential describes an authenticator in a CredentialChanged event.
type Credential struct {
	// Type is "jpki" (an authentication certificate link) or "passkey".
	Type string `json:"type"`
	// Change is "create", "delete" or "revoke" (blocked by the kill
	// switch).
	Change string `json:"change"`
	// Ref is the credential's opaque ID inside the account (link ID,
	// passkey ID), never a certificate serial.
	Ref string `json:"ref"`
	// Label is the JPKI token label (JPKIAPGPSETOKEN ...), never a
	// personal value.
	Label string `json:"label,omitempty"`
}

// Event is one entry of the outbox.
type Event struct {
	// ID is set by Publish: the stream entry's ID, increasing.
	ID   string    `json:"id"`
	Kind Kind      `json:"kind"`
	Time time.Time `json:"time"`
	// AccountID is the internal account ID; consumers derive whatever
	// a relying party may see (pairwise subjects) from it.
	AccountID string `json:"account"`
	// SessionID is the internal session ID (session.Session.ID), never
	// the cookie.
	SessionID string   `json:"sid,omitempty"`
	ClientIDs []string `json:"clients,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	// Method is how a sign-in was made: "jpki:<token label>" or
	// "passkey:<passkey id>".
	Method     string      `json:"method,omitempty"`
	Credential *Credential `json:"credential,omitempty"`
}

// Bounds on one event. Events come from authenticated actions only, but
// a stream entry is kept for days, so each is capped all the same. A
// field holds at most a passkey's credential ID (1023 bytes, base64url)
// with its prefix.
const (
	maxClients = 64
	maxField   = 1400
)

// validate refuses an event a producer got wrong; it is a programming
// error, reported rather than stored.
func (e *Event) validate() error {
	switch e.Kind {
	case SignedIn, SessionEnded, CredentialChanged, FactsStale, ConsentWithdrawn:
	default:
		return fmt.Errorf("events: unknown kind %q", e.Kind)
	}
	if e.AccountID == "" {
		return errors.New("events: event without an account")
	}
	if len(e.ClientIDs) > maxClients {
		return fmt.Errorf("events: %d clients, at most %d", len(e.ClientIDs), maxClients)
	}
	fields := []string{e.AccountID, e.SessionID, e.Reason, e.Method}
	fields = append(fields, e.ClientIDs...)
	if c := e.Credential; c != nil {
		fields = append(fields, c.Type, c.Change, c.Ref, c.Label)
	}
	for _, f := range fields {
		if len(f) > maxField {
			return fmt.Errorf("events: a field of %d bytes, at most %d", len(f), maxField)
		}
	}
	if e.Kind == CredentialChanged && e.Credential == nil {
		return errors.New("events: credential_changed without a credential")
	}
	if e.Kind == ConsentWithdrawn && len(e.ClientIDs) == 0 {
		return errors.New("events: consent_withdrawn without a client")
	}
	return nil
}

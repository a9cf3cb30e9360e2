package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/consent"
	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/delivery"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/web"
	"github.com/watashi-id/watashi/whitelist"
)

// TokenType is a SET's typ header (RFC 8417 §2.3).
const TokenType = "secevent+jwt"

// Clients is what the transmitter needs of the client resolver.
type Clients interface {
	Get(ctx context.Context, id string) (*clients.Client, error)
	Subject(c *clients.Client, accountID string) string
}

// Grants lists the relying parties an account consented to
// (consent.Store).
type Grants interface {
	List(ctx context.Context, account string) ([]*consent.Grant, error)
}

// Signer signs JWTs with the provider's key ring (keys.Manager).
type Signer interface {
	SignJWT(ctx context.Context, alg jose.SignatureAlgorithm, typ string, claims any) (string, error)
}

// Fetcher posts to receivers and checks their URLs (whitelist.Fetcher).
type Fetcher interface {
	Post(ctx context.Context, rawURL string, body []byte, o whitelist.PostOptions) ([]byte, error)
	CheckURL(ctx context.Context, rawURL string) error
}

// ClientAuth authenticates a relying party by its token-endpoint
// credentials (provider.Server.AuthenticateClient). A refusal wraps
// Refused.
type ClientAuth interface {
	AuthenticateClient(ctx context.Context, clientID, secret, assertion string) (*clients.Entry, error)
}

// Options configure the transmitter.
type Options struct {
	Store   KV
	Web     *web.Kit
	Clients Clients
	Grants  Grants
	Keys    Signer
	Fetcher Fetcher
	Auth    ClientAuth
	// Refused is the error ClientAuth wraps when it refuses credentials
	// (provider.ErrClientRefused).
	Refused error
	// KEK seals receivers' authorization headers at rest (required).
	KEK *seal.Ring
	// Dev allows http receiver endpoints.
	Dev bool
	// MinVerificationInterval is how often a stream may ask for a
	// verification event (default 15s).
	MinVerificationInterval time.Duration
	// PollWait is how long a poll without returnImmediately waits for
	// an event (default 10s).
	PollWait time.Duration
	// Queue tunes the per-stream push queues; Name is set here.
	Queue   delivery.Options
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Transmitter is the SSF transmitter: HTTP endpoints, the outbox
// consumer and push delivery.
type Transmitter struct {
	o       Options
	streams streams
	push    *delivery.Queue
	poll    *delivery.Queue
	log     *slog.Logger
	issuer  string
}

// New returns a transmitter.
func New(o Options) (*Transmitter, error) {
	if o.Store == nil || o.Web == nil || o.Clients == nil || o.Grants == nil || o.Keys == nil || o.Fetcher == nil || o.Auth == nil || o.KEK == nil {
		return nil, errors.New("ssf: Store, Web, Clients, Grants, Keys, Fetcher, Auth and KEK are required")
	}
	if o.MinVerificationInterval <= 0 {
		o.MinVerificationInterval = 15 * time.Second
	}
	if o.PollWait <= 0 {
		o.PollWait = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Transmitter{o: o, streams: streams{kv: o.Store, ring: o.KEK}, log: o.Logger, issuer: o.Web.Issuer()}
	qo := o.Queue
	qo.Name, qo.Logger, qo.Metrics, qo.Now = "ssf-push", o.Logger, o.Metrics, o.Now
	var err error
	if t.push, err = delivery.New(o.Store, qo); err != nil {
		return nil, err
	}
	// Poll queues are read by receivers; they keep events a week, as a
	// receiver may poll rarely, and the same bound per stream.
	po := delivery.Options{Name: "ssf-poll", MaxPerDest: qo.MaxPerDest, Retention: 7 * 24 * time.Hour, Logger: o.Logger, Metrics: o.Metrics, Now: o.Now}
	if t.poll, err = delivery.New(o.Store, po); err != nil {
		return nil, err
	}
	return t, nil
}

// Run pushes queued SETs until ctx ends.
func (t *Transmitter) Run(ctx context.Context) { t.push.Run(ctx, t.send) }

// Round pushes what is due now, once.
func (t *Transmitter) Round(ctx context.Context) { t.push.Round(ctx, t.send) }

// subID is a SET subject (RFC 9493).
type subID struct {
	Format string `json:"format"`
	Iss    string `json:"iss,omitempty"`
	Sub    string `json:"sub,omitempty"`
	ID     string `json:"id,omitempty"`
}

// set is a SET's claims (RFC 8417 §2.2, SSF 1.0 §4).
type set struct {
	Issuer   string                    `json:"iss"`
	JTI      string                    `json:"jti"`
	IssuedAt int64                     `json:"iat"`
	Audience string                    `json:"aud"`
	Txn      string                    `json:"txn,omitempty"`
	SubID    subID                     `json:"sub_id"`
	Events   map[string]map[string]any `json:"events"`
}

// setJob is a queued SET: its claims and the algorithm to sign with.
type setJob struct {
	Stream string `json:"stream"`
	Alg    string `json:"alg"`
	Claims set    `json:"claims"`
}

// initiating is CAEP's initiating_entity for a session's end.
func initiating(reason string) string {
	switch reason {
	case events.ReasonBlocked:
		return "admin"
	case events.ReasonExpired:
		return "system"
	case "":
		return "policy"
	}
	return "user"
}

// credentialType is CAEP's credential_type for Watashi's authenticators.
func credentialType(t string) string {
	switch t {
	case "jpki":
		return "x509"
	case "passkey":
		return "fido2-platform"
	}
	return "app"
}

// payloads maps an event to the SET events it becomes, one SET each
// (SSF 1.0 §4: one event per SET).
func payloads(e events.Event) map[string]map[string]any {
	ts := e.Time.Unix()
	switch e.Kind {
	case events.SessionEnded:
		p := map[string]any{"event_timestamp": ts, "initiating_entity": initiating(e.Reason)}
		if e.Reason != "" {
			p["reason_admin"] = map[string]string{"en": e.Reason}
		}
		return map[string]map[string]any{EventSessionRevoked: p}
	case events.ConsentWithdrawn:
		return map[string]map[string]any{EventSessionRevoked: {
			"event_timestamp": ts, "initiating_entity": "user", "reason_admin": map[string]string{"en": events.ReasonConsentWithdrawn},
		}}
	case events.CredentialChanged:
		c := e.Credential
		if c == nil {
			return nil
		}
		change := c.Change
		switch change {
		case "create", "delete", "revoke", "update":
		default:
			change = "update"
		}
		p := map[string]any{"event_timestamp": ts, "credential_type": credentialType(c.Type), "change_type": change,
			"initiating_entity": "user"}
		if c.Label != "" {
			p["friendly_name"] = c.Label
		}
		out := map[string]map[string]any{EventCredentialChange: p}
		if change == "revoke" {
			// Blocked by the operator: the resident must sign in with
			// another authenticator.
			p["initiating_entity"] = "admin"
			out[EventChangeRequired] = map[string]any{}
		}
		return out
	case events.FactsStale:
		// The signature certificate that proved the facts was revoked
		// (the resident moved, changed name ...): the facts the RP holds
		// may be out of date until the resident proves them again.
		return map[string]map[string]any{EventCredentialChange: {
			"event_timestamp": ts, "credential_type": "x509", "change_type": "revoke", "initiating_entity": "system",
			"reason_admin": map[string]string{"en": "identity proofing certificate revoked; facts must be proved again"},
		}}
	}
	return nil
}

// Handle is the outbox consumer: it queues a SET for every stream that
// asked for the event's type, of every relying party holding a grant
// for the account (and the one a withdrawn consent names).
func (t *Transmitter) Handle(ctx context.Context, e events.Event) error {
	ps := payloads(e)
	if len(ps) == 0 {
		return nil
	}
	grants, err := t.o.Grants.List(ctx, e.AccountID)
	if err != nil {
		return fmt.Errorf("ssf: grants: %w", err)
	}
	var targets []string
	for _, g := range grants {
		targets = append(targets, g.Client)
	}
	if e.Kind == events.ConsentWithdrawn && len(e.ClientIDs) > 0 {
		targets = append(targets, e.ClientIDs[0])
	}
	seen := map[string]bool{}
	for _, id := range targets {
		if seen[id] {
			continue
		}
		seen[id] = true
		ss, err := t.streams.list(ctx, id)
		if err != nil {
			return fmt.Errorf("ssf: streams: %w", err)
		}
		if len(ss) == 0 {
			continue
		}
		c, err := t.o.Clients.Get(ctx, id)
		if errors.Is(err, clients.ErrUnavailable) {
			return err
		}
		if err != nil {
			continue // the client may not act now: it hears nothing
		}
		sub := subID{Format: "iss_sub", Iss: t.issuer, Sub: t.o.Clients.Subject(c, e.AccountID)}
		for _, s := range ss {
			if e.Time.Before(s.Created) {
				continue // it happened before the stream existed
			}
			for typ, p := range ps {
				if !s.wants(typ) {
					continue
				}
				jti := ids.Hash(e.ID + "\x00" + s.ID + "\x00" + typ)[:32]
				claims := set{Issuer: t.issuer, JTI: jti, IssuedAt: t.o.Now().Unix(), Audience: id, Txn: e.ID, SubID: sub,
					Events: map[string]map[string]any{typ: p}}
				if err := t.enqueue(ctx, s, c, claims); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func algOf(c *clients.Client) jose.SignatureAlgorithm {
	if c != nil && c.IDTokenAlg == string(jose.RS256) {
		return jose.RS256
	}
	return jose.ES256
}

func (t *Transmitter) enqueue(ctx context.Context, s *Stream, c *clients.Client, claims set) error {
	b, err := json.Marshal(setJob{Stream: s.ID, Alg: string(algOf(c)), Claims: claims})
	if err != nil {
		return err
	}
	q := t.push
	if s.Delivery.Method == MethodPoll {
		q = t.poll
	}
	switch err := q.Enqueue(ctx, s.ID, claims.JTI, b); {
	case errors.Is(err, delivery.ErrFull):
		t.log.Warn("ssf: stream queue full; event dropped", "stream", s.ID)
	case err != nil:
		return err
	}
	return nil
}

func (t *Transmitter) sign(ctx context.Context, j setJob) (string, error) {
	alg := jose.ES256
	if j.Alg == string(jose.RS256) {
		alg = jose.RS256
	}
	return t.o.Keys.SignJWT(ctx, alg, TokenType, j.Claims)
}

// send pushes one SET (RFC 8935 §2): 202 (any 2xx) is done; a 400 is
// the receiver refusing this SET, final; the rest is retried.
func (t *Transmitter) send(ctx context.Context, dj delivery.Job) error {
	var j setJob
	if err := json.Unmarshal(dj.Payload, &j); err != nil {
		return delivery.Permanent(err)
	}
	s, _, err := t.streams.get(ctx, j.Stream)
	switch {
	case errors.Is(err, errNoStream):
		return delivery.Permanent(err)
	case err != nil:
		return err
	case s.Status == StatusDisabled || s.Delivery.Method != MethodPush:
		return delivery.Permanent(errors.New("ssf: stream disabled or no longer push"))
	case s.Status == StatusPaused:
		return delivery.Later(30 * time.Second)
	}
	auth, err := t.streams.authHeader(s)
	if err != nil {
		return err // a KEK missing on this node is its fault, not the receiver's
	}
	tok, err := t.sign(ctx, j)
	if err != nil {
		return err
	}
	_, err = t.o.Fetcher.Post(ctx, s.Delivery.EndpointURL, []byte(tok), whitelist.PostOptions{
		ContentType: "application/secevent+jwt", Accept: "application/json", Authorization: auth,
	})
	var fe *whitelist.FetchError
	if errors.As(err, &fe) {
		switch {
		case errors.Is(fe.Kind, whitelist.ErrFetchStatus) && fe.Status >= 400 && fe.Status < 500 && fe.Status != 408 && fe.Status != 429,
			errors.Is(fe.Kind, whitelist.ErrFetchURL), errors.Is(fe.Kind, whitelist.ErrFetchRedirect):
			return delivery.Permanent(err)
		}
	}
	return err
}

// verify queues a verification event for s (SSF 1.0 §8.1.4): its
// subject is the stream, and every stream receives it whatever it
// requested.
func (t *Transmitter) verify(ctx context.Context, s *Stream, c *clients.Client, state string) error {
	p := map[string]any{}
	if state != "" {
		p["state"] = state
	}
	jti := ids.Long()[:32]
	claims := set{Issuer: t.issuer, JTI: jti, IssuedAt: t.o.Now().Unix(), Audience: s.Client,
		SubID: subID{Format: "opaque", ID: s.ID}, Events: map[string]map[string]any{EventVerification: p}}
	return t.enqueue(ctx, s, c, claims)
}

// statusCode maps an error of the store to the answer: an outage is 503.
func statusOf(err error) int {
	if errors.Is(err, errNoStream) {
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}

package backchannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/delivery"
	"github.com/watashi-id/watashi/idp/events"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/whitelist"
)

// EventURI is the logout token's event (Back-Channel Logout 1.0 §2.4).
const EventURI = "http://schemas.openid.net/event/backchannel-logout"

// TokenType is the logout token's typ header (§2.4, RFC 8725 §3.11).
const TokenType = "logout+jwt"

// Clients is what the package needs of the client resolver.
type Clients interface {
	Get(ctx context.Context, id string) (*clients.Client, error)
	Subject(c *clients.Client, accountID string) string
}

// Signer signs JWTs with the provider's key ring (keys.Manager).
type Signer interface {
	SignJWT(ctx context.Context, alg jose.SignatureAlgorithm, typ string, claims any) (string, error)
}

// Poster posts to URLs integrators registered (whitelist.Fetcher).
type Poster interface {
	Post(ctx context.Context, rawURL string, body []byte, o whitelist.PostOptions) ([]byte, error)
}

// Options configure the sender.
type Options struct {
	Store   delivery.KV
	Issuer  string
	Clients Clients
	Keys    Signer
	Fetcher Poster
	// SID derives the pairwise session ID a client of sector saw in its
	// ID tokens; nil sends no sid.
	SID func(sessionID, sector string) string
	// TokenTTL is the logout token's lifetime (default 2m).
	TokenTTL time.Duration
	// Queue tunes the delivery queue; its Name is set here.
	Queue   delivery.Options
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Sender queues and sends logout tokens.
type Sender struct {
	o   Options
	q   *delivery.Queue
	log *slog.Logger
}

// New returns a Sender.
func New(o Options) (*Sender, error) {
	if o.Store == nil || o.Clients == nil || o.Keys == nil || o.Fetcher == nil || o.Issuer == "" {
		return nil, errors.New("backchannel: Store, Issuer, Clients, Keys and Fetcher are required")
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	qo := o.Queue
	qo.Name, qo.Logger, qo.Metrics, qo.Now = "backchannel", o.Logger, o.Metrics, o.Now
	q, err := delivery.New(o.Store, qo)
	if err != nil {
		return nil, err
	}
	return &Sender{o: o, q: q, log: o.Logger}, nil
}

// job is what is queued for one client.
type job struct {
	Client string `json:"client"`
	Sub    string `json:"sub"`
	SID    string `json:"sid,omitempty"`
	JTI    string `json:"jti"`
}

// Ended queues a logout token for every client of clientIDs that
// registered a back-channel logout URI: the session sessionID (empty:
// every session of the account at that client, as after a withdrawn
// consent) of accountID ended. eventID names the event, so that handling
// it twice queues once. A client that cannot be looked up now is an
// error (the event is retried); one the registry refuses is skipped.
func (s *Sender) Ended(ctx context.Context, eventID, accountID, sessionID string, clientIDs []string) error {
	seen := map[string]bool{}
	for _, id := range clientIDs {
		if seen[id] {
			continue
		}
		seen[id] = true
		c, err := s.o.Clients.Get(ctx, id)
		if err != nil {
			if errors.Is(err, clients.ErrUnavailable) {
				return fmt.Errorf("backchannel: client lookup: %w", err)
			}
			continue // unknown, suspended or revoked: nothing to tell it
		}
		if c.BackchannelLogoutURI == "" {
			continue
		}
		j := job{Client: id, Sub: s.o.Clients.Subject(c, accountID), JTI: ids.Hash(eventID + "\x00" + id)[:32]}
		if sessionID != "" && s.o.SID != nil {
			j.SID = s.o.SID(sessionID, c.Sector)
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		switch err := s.q.Enqueue(ctx, id, eventID, b); {
		case errors.Is(err, delivery.ErrFull):
			s.log.Warn("backchannel: the client's queue is full; logout token dropped", "client", id)
		case err != nil:
			return err
		}
	}
	return nil
}

// Run sends queued logout tokens until ctx ends.
func (s *Sender) Run(ctx context.Context) { s.q.Run(ctx, s.send) }

// Round sends what is due now, once (tests, operators' tools).
func (s *Sender) Round(ctx context.Context) { s.q.Round(ctx, s.send) }

// Token is a logout token's claims (§2.4).
type Token struct {
	Issuer   string                     `json:"iss"`
	Subject  string                     `json:"sub"`
	Audience string                     `json:"aud"`
	IssuedAt int64                      `json:"iat"`
	Expiry   int64                      `json:"exp"`
	JTI      string                     `json:"jti"`
	Events   map[string]json.RawMessage `json:"events"`
	SID      string                     `json:"sid,omitempty"`
}

func (s *Sender) send(ctx context.Context, dj delivery.Job) error {
	var j job
	if err := json.Unmarshal(dj.Payload, &j); err != nil {
		return delivery.Permanent(fmt.Errorf("backchannel: job: %w", err))
	}
	c, err := s.o.Clients.Get(ctx, j.Client)
	switch {
	case errors.Is(err, clients.ErrUnavailable):
		return err
	case err != nil:
		return delivery.Permanent(fmt.Errorf("backchannel: client no longer acts: %w", err))
	case c.BackchannelLogoutURI == "":
		return delivery.Permanent(errors.New("backchannel: the client removed its back-channel logout URI"))
	}
	now := s.o.Now()
	t := Token{
		Issuer: s.o.Issuer, Subject: j.Sub, Audience: c.ID, IssuedAt: now.Unix(), Expiry: now.Add(s.o.TokenTTL).Unix(),
		JTI: j.JTI, SID: j.SID, Events: map[string]json.RawMessage{EventURI: json.RawMessage("{}")},
	}
	alg := jose.ES256
	if c.IDTokenAlg == string(jose.RS256) {
		alg = jose.RS256
	}
	tok, err := s.o.Keys.SignJWT(ctx, alg, TokenType, t)
	if err != nil {
		return err
	}
	body := url.Values{"logout_token": {tok}}.Encode()
	_, err = s.o.Fetcher.Post(ctx, c.BackchannelLogoutURI, []byte(body), whitelist.PostOptions{ContentType: "application/x-www-form-urlencoded"})
	return classify(err)
}

// classify turns a fetch error into a queue decision: the RP's refusal
// of the token (4xx but 408 and 429), or a URL the rules refuse, is
// permanent; the rest is temporary.
func classify(err error) error {
	if err == nil {
		return nil
	}
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

// Handle is the outbox consumer: a SessionEnded event logs the session
// out at the clients that got tokens in it; a ConsentWithdrawn event
// logs the account out at the withdrawn client (every session: the
// token has no sid). Other kinds are not this package's.
func (s *Sender) Handle(ctx context.Context, e events.Event) error {
	switch e.Kind {
	case events.SessionEnded:
		return s.Ended(ctx, e.ID, e.AccountID, e.SessionID, e.ClientIDs)
	case events.ConsentWithdrawn:
		if len(e.ClientIDs) == 0 {
			return nil
		}
		return s.Ended(ctx, e.ID, e.AccountID, "", e.ClientIDs[:1])
	}
	return nil
}

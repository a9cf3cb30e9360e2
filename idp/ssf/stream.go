package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/seal"
	"github.com/watashi-id/watashi/idp/store"
)

// Event types (CAEP 1.0, RISC 1.0, SSF 1.0).
const (
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	EventChangeRequired   = "https://schemas.openid.net/secevent/risc/event-type/account-credential-change-required"
	EventVerification     = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated    = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// EventsSupported are the event types a stream may request.
var EventsSupported = []string{EventSessionRevoked, EventCredentialChange, EventChangeRequired}

// Delivery methods (SSF 1.0 §6.1.1).
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// Stream statuses (SSF 1.0 §8.1.2).
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Bounds on what a relying party may store.
const (
	MaxStreamsPerClient = 3
	maxEventsRequested  = 16
	maxURILen           = 2000
	maxAuthHeader       = 1024
	maxDescription      = 256
	maxReason           = 256
	maxState            = 256
	maxStreamID         = 64
)

// Delivery is a stream's delivery configuration.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// Stream is a stream as stored.
type Stream struct {
	ID              string   `json:"stream_id"`
	Client          string   `json:"client"`
	EventsRequested []string `json:"events_requested"`
	Delivery        Delivery `json:"delivery"`
	Description     string   `json:"description,omitempty"`
	Status          string   `json:"status"`
	Reason          string   `json:"reason,omitempty"`
	// AuthSealed is the push receiver's authorization header, a secret
	// of the receiver, sealed under AuthKey (a data key the KEK wraps):
	// Delivery.AuthorizationHeader is never stored.
	AuthSealed []byte    `json:"auth_sealed,omitempty"`
	AuthKey    []byte    `json:"auth_key,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// delivered are the requested events the transmitter sends.
func (s *Stream) delivered() []string {
	var out []string
	for _, e := range s.EventsRequested {
		if slices.Contains(EventsSupported, e) {
			out = append(out, e)
		}
	}
	return out
}

// wants reports whether the stream delivers event type t now.
func (s *Stream) wants(t string) bool {
	return s.Status != StatusDisabled && slices.Contains(s.delivered(), t)
}

func streamKey(id string) string        { return "ssf:stream:" + id }
func clientStreamsKey(id string) string { return "ssf:streams:" + id }

// KV is the part of the store streams use.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	SetNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	CompareAndSwap(ctx context.Context, key string, old, new []byte) (bool, error)
	Delete(ctx context.Context, keys ...string) error
	SetAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	SetMembers(ctx context.Context, key string) ([]string, error)
	SetRemove(ctx context.Context, key string, members ...string) error
	Publish(ctx context.Context, channel string, msg []byte) error
	Subscribe(ctx context.Context, channel string) (<-chan []byte, error)
}

// Problems with a stream configuration; the text is for the integrator.
type configError struct{ msg string }

func (e configError) Error() string { return e.msg }

func badConfig(format string, a ...any) error { return configError{fmt.Sprintf(format, a...)} }

// streamRequest is what a receiver sends to create or update a stream
// (SSF 1.0 §8.1.1). Read-only fields it echoes back are ignored.
type streamRequest struct {
	StreamID        string    `json:"stream_id,omitempty"`
	EventsRequested *[]string `json:"events_requested,omitempty"`
	Delivery        *Delivery `json:"delivery,omitempty"`
	Description     *string   `json:"description,omitempty"`
}

// apply validates req over s (a new stream or a copy of a stored one).
// checkURL is the guarded fetcher's registration-time check.
func apply(s *Stream, req streamRequest, dev bool, checkURL func(string) error) error {
	if req.EventsRequested != nil {
		ev := *req.EventsRequested
		if len(ev) > maxEventsRequested {
			return badConfig("events_requested: at most %d event types", maxEventsRequested)
		}
		var out []string
		for _, e := range ev {
			if len(e) > maxURILen || e == "" {
				return badConfig("events_requested: an event type is empty or longer than %d characters", maxURILen)
			}
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
		s.EventsRequested = out
	}
	if req.Description != nil {
		d := *req.Description
		if len(d) > maxDescription || strings.ContainsFunc(d, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return badConfig("description: at most %d bytes, no control characters", maxDescription)
		}
		s.Description = d
	}
	if req.Delivery != nil {
		d := *req.Delivery
		switch d.Method {
		case MethodPush:
			if err := checkEndpoint(d.EndpointURL, dev); err != nil {
				return err
			}
			if checkURL != nil {
				if err := checkURL(d.EndpointURL); err != nil {
					return badConfig("delivery.endpoint_url: %v", err)
				}
			}
			if len(d.AuthorizationHeader) > maxAuthHeader || strings.ContainsAny(d.AuthorizationHeader, "\r\n\x00") {
				return badConfig("delivery.authorization_header: at most %d bytes on one line", maxAuthHeader)
			}
		case MethodPoll:
			if d.EndpointURL != "" || d.AuthorizationHeader != "" {
				return badConfig("delivery: for poll delivery the transmitter supplies endpoint_url; send the method alone")
			}
		case "":
			return badConfig("delivery.method is required: %q (push) or %q (poll)", MethodPush, MethodPoll)
		default:
			return badConfig("delivery.method %q is not supported: use %q (push) or %q (poll)", d.Method, MethodPush, MethodPoll)
		}
		s.Delivery = d
		s.AuthSealed, s.AuthKey = nil, nil // the new delivery replaces the old one whole
	}
	if s.Delivery.Method == "" {
		return badConfig("delivery is required")
	}
	return nil
}

func checkEndpoint(raw string, dev bool) error {
	if raw == "" {
		return badConfig("delivery.endpoint_url is required for push delivery")
	}
	if len(raw) > maxURILen {
		return badConfig("delivery.endpoint_url: longer than %d characters", maxURILen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return badConfig("delivery.endpoint_url: not an absolute URL")
	}
	if u.Scheme != "https" && !(dev && u.Scheme == "http") {
		return badConfig("delivery.endpoint_url: must be https")
	}
	if u.Fragment != "" || u.User != nil {
		return badConfig("delivery.endpoint_url: no fragment or user information")
	}
	return nil
}

// streams is the stream records in the store.
type streams struct {
	kv   KV
	ring *seal.Ring
}

func authAAD(id string) []byte { return []byte("ssf-auth:" + id) }

// sealAuth moves a plaintext authorization header into the sealed
// fields, before a record is written.
func (st streams) sealAuth(s *Stream) error {
	h := s.Delivery.AuthorizationHeader
	if h == "" {
		return nil
	}
	if st.ring == nil {
		return errors.New("ssf: no key to seal the receiver's authorization header")
	}
	sealer, w, err := st.ring.NewSealer(authAAD(s.ID))
	if err != nil {
		return err
	}
	s.AuthKey, s.AuthSealed = w, sealer.Seal([]byte(h), authAAD(s.ID))
	s.Delivery.AuthorizationHeader = ""
	return nil
}

// authHeader opens the receiver's authorization header ("" for none).
func (st streams) authHeader(s *Stream) (string, error) {
	if len(s.AuthSealed) == 0 {
		return "", nil
	}
	if st.ring == nil {
		return "", errors.New("ssf: no key to open the receiver's authorization header")
	}
	sealer, err := st.ring.OpenSealer(s.AuthKey, authAAD(s.ID))
	if err != nil {
		return "", fmt.Errorf("ssf: authorization header key: %w", err)
	}
	b, err := sealer.Open(s.AuthSealed, authAAD(s.ID))
	if err != nil {
		return "", fmt.Errorf("ssf: authorization header: %w", err)
	}
	return string(b), nil
}

var errNoStream = errors.New("ssf: no such stream")

func (st streams) get(ctx context.Context, id string) (*Stream, []byte, error) {
	if id == "" || len(id) > maxStreamID {
		return nil, nil, errNoStream
	}
	b, err := st.kv.Get(ctx, streamKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errNoStream
	}
	if err != nil {
		return nil, nil, err
	}
	var s Stream
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("ssf: stream record: %w", err)
	}
	return &s, b, nil
}

// owned reads the stream only if client owns it: another client's
// stream is as unknown as a missing one.
func (st streams) owned(ctx context.Context, client, id string) (*Stream, []byte, error) {
	s, raw, err := st.get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if s.Client != client {
		return nil, nil, errNoStream
	}
	return s, raw, nil
}

func (st streams) list(ctx context.Context, client string) ([]*Stream, error) {
	idList, err := st.kv.SetMembers(ctx, clientStreamsKey(client))
	if err != nil {
		return nil, err
	}
	slices.Sort(idList)
	var out []*Stream
	for _, id := range idList {
		s, _, err := st.get(ctx, id)
		if errors.Is(err, errNoStream) {
			_ = st.kv.SetRemove(ctx, clientStreamsKey(client), id)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (st streams) create(ctx context.Context, s *Stream) error {
	if err := st.sealAuth(s); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ok, err := st.kv.SetNX(ctx, streamKey(s.ID), b, 0)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("ssf: stream ID collision")
	}
	return st.kv.SetAdd(ctx, clientStreamsKey(s.Client), 0, s.ID)
}

// replace writes s over the record read as old; false when it changed
// meanwhile.
func (st streams) replace(ctx context.Context, old []byte, s *Stream) (bool, error) {
	if err := st.sealAuth(s); err != nil {
		return false, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return false, err
	}
	return st.kv.CompareAndSwap(ctx, streamKey(s.ID), old, b)
}

func (st streams) remove(ctx context.Context, s *Stream) error {
	if err := st.kv.Delete(ctx, streamKey(s.ID)); err != nil {
		return err
	}
	return st.kv.SetRemove(ctx, clientStreamsKey(s.Client), s.ID)
}

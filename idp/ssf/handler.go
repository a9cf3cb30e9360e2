package ssf

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/watashi-id/watashi/idp/clients"
	"github.com/watashi-id/watashi/idp/internal/ids"
	"github.com/watashi-id/watashi/idp/web"
)

// Paths of the transmitter.
const (
	ConfigurationPath = "/.well-known/ssf-configuration"
	StreamPath        = "/ssf/stream"
	StatusPath        = "/ssf/status"
	VerifyPath        = "/ssf/verify"
	PollPath          = "/ssf/poll/"
)

// Bounds on requests.
const (
	maxManagementBody = 16 << 10
	maxPollBody       = 64 << 10
	maxPollEvents     = 100
	defaultPollEvents = 20
	maxAcks           = 1000
)

// RouteNames are the metric labels of the transmitter's routes.
func RouteNames() map[string]string {
	return map[string]string{ConfigurationPath: "ssf_configuration", StreamPath: "ssf_stream", StatusPath: "ssf_status",
		VerifyPath: "ssf_verify", PollPath: "ssf_poll"}
}

// Mount registers the transmitter's routes.
func (t *Transmitter) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ConfigurationPath, t.handleConfiguration)
	mux.HandleFunc(StreamPath, t.api(t.handleStream))
	mux.HandleFunc(StatusPath, t.api(t.handleStatus))
	mux.HandleFunc("POST "+VerifyPath, t.api(t.handleVerify))
	mux.HandleFunc("POST "+PollPath+"{stream}", t.api(t.handlePoll))
}

func (t *Transmitter) abs(path string) string { return strings.TrimSuffix(t.issuer, "/") + path }

// configuration is the transmitter metadata (SSF 1.0 §7.1).
type configuration struct {
	SpecVersion              string              `json:"spec_version"`
	Issuer                   string              `json:"issuer"`
	JWKSURI                  string              `json:"jwks_uri"`
	DeliveryMethodsSupported []string            `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string              `json:"configuration_endpoint"`
	StatusEndpoint           string              `json:"status_endpoint"`
	VerificationEndpoint     string              `json:"verification_endpoint"`
	CriticalSubjectMembers   []string            `json:"critical_subject_members"`
	AuthorizationSchemes     []map[string]string `json:"authorization_schemes"`
	DefaultSubjects          string              `json:"default_subjects"`
}

func (t *Transmitter) handleConfiguration(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	web.WriteJSON(w, http.StatusOK, configuration{
		SpecVersion: "1_0", Issuer: t.issuer, JWKSURI: t.abs("/keys"),
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    t.abs(StreamPath), StatusEndpoint: t.abs(StatusPath), VerificationEndpoint: t.abs(VerifyPath),
		CriticalSubjectMembers: []string{"iss", "sub"},
		// The client's own token-endpoint credentials (RFC 6749 §2.3).
		AuthorizationSchemes: []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}, {"spec_urn": "urn:ietf:rfc:7523"}},
		DefaultSubjects:      "ALL",
	})
}

func fail(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="ssf", Bearer realm="ssf"`)
	}
	web.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// api authenticates the client before h runs; nothing is read or
// written for a request that fails authentication.
func (t *Transmitter) api(h func(http.ResponseWriter, *http.Request, *clients.Entry)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		web.NoStore(w.Header())
		var id, secret, assertion string
		auth := r.Header.Get("Authorization")
		scheme, cred, _ := strings.Cut(auth, " ")
		switch {
		case strings.EqualFold(scheme, "Basic"):
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
			u, p, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				fail(w, http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
				return
			}
			// RFC 6749 §2.3.1: both parts are form-encoded.
			if id, err = url.QueryUnescape(u); err == nil {
				secret, err = url.QueryUnescape(p)
			}
			if err != nil || id == "" {
				fail(w, http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
				return
			}
		case strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(cred) != "":
			assertion = strings.TrimSpace(cred)
		default:
			fail(w, http.StatusUnauthorized, "invalid_client", "authenticate with the client's credentials: HTTP Basic (client_secret_basic) or a private_key_jwt client assertion as a Bearer token")
			return
		}
		if len(assertion) > 8<<10 || len(id) > 256 || len(secret) > 512 {
			fail(w, http.StatusUnauthorized, "invalid_client", "credentials too long")
			return
		}
		e, err := t.o.Auth.AuthenticateClient(r.Context(), id, secret, assertion)
		if err != nil {
			if t.o.Refused != nil && errors.Is(err, t.o.Refused) {
				fail(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
				return
			}
			t.log.WarnContext(r.Context(), "ssf: client authentication unavailable", "err", err)
			fail(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
			return
		}
		h(w, r, e)
	}
}

// readJSON reads a bounded JSON object body into v, refusing unknown
// content types, oversize bodies and trailing data.
func readJSON(w http.ResponseWriter, r *http.Request, max int64, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "invalid_request", "the body must be application/json")
		return false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", "the body could not be read")
		return false
	}
	if int64(len(b)) > max {
		fail(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is too large")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", "the body is not the expected JSON object")
		return false
	}
	if dec.More() {
		fail(w, http.StatusBadRequest, "invalid_request", "data after the JSON object")
		return false
	}
	return true
}

// streamConfig is a stream as a receiver reads it (SSF 1.0 §8.1.1).
// The authorization header, a receiver's secret, is never echoed.
type streamConfig struct {
	StreamID                string   `json:"stream_id"`
	Issuer                  string   `json:"iss"`
	Audience                string   `json:"aud"`
	EventsSupported         []string `json:"events_supported"`
	EventsRequested         []string `json:"events_requested"`
	EventsDelivered         []string `json:"events_delivered"`
	Delivery                Delivery `json:"delivery"`
	MinVerificationInterval int      `json:"min_verification_interval"`
	Description             string   `json:"description,omitempty"`
}

func (t *Transmitter) config(s *Stream) streamConfig {
	d := Delivery{Method: s.Delivery.Method, EndpointURL: s.Delivery.EndpointURL}
	if d.Method == MethodPoll {
		d.EndpointURL = t.abs(PollPath + s.ID)
	}
	return streamConfig{
		StreamID: s.ID, Issuer: t.issuer, Audience: s.Client, EventsSupported: EventsSupported,
		EventsRequested: nonNil(s.EventsRequested), EventsDelivered: nonNil(s.delivered()), Delivery: d,
		MinVerificationInterval: int(t.o.MinVerificationInterval / time.Second), Description: s.Description,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (t *Transmitter) checkURL(ctx context.Context) func(string) error {
	return func(u string) error { return t.o.Fetcher.CheckURL(ctx, u) }
}

func (t *Transmitter) handleStream(w http.ResponseWriter, r *http.Request, e *clients.Entry) {
	ctx := r.Context()
	client := e.Client.ID
	switch r.Method {
	case http.MethodGet:
		if id := r.URL.Query().Get("stream_id"); id != "" {
			s, _, err := t.streams.owned(ctx, client, id)
			if err != nil {
				t.storeFail(w, r, err)
				return
			}
			web.WriteJSON(w, http.StatusOK, t.config(s))
			return
		}
		ss, err := t.streams.list(ctx, client)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		out := []streamConfig{}
		for _, s := range ss {
			out = append(out, t.config(s))
		}
		web.WriteJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var req streamRequest
		if !readJSON(w, r, maxManagementBody, &req) {
			return
		}
		existing, err := t.streams.list(ctx, client)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		if len(existing) >= MaxStreamsPerClient {
			fail(w, http.StatusConflict, "invalid_request", "this client already has the most streams allowed; update or delete one")
			return
		}
		now := t.o.Now()
		s := &Stream{ID: ids.Short(), Client: client, Status: StatusEnabled, Created: now, Updated: now}
		if err := apply(s, req, t.o.Dev, t.checkURL(ctx)); err != nil {
			fail(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if err := t.streams.create(ctx, s); err != nil {
			t.storeFail(w, r, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, t.config(s))
	case http.MethodPatch, http.MethodPut:
		var req streamRequest
		if !readJSON(w, r, maxManagementBody, &req) {
			return
		}
		s, raw, err := t.streams.owned(ctx, client, req.StreamID)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		if r.Method == http.MethodPut {
			// Replace: what the receiver leaves out is reset.
			if req.EventsRequested == nil {
				req.EventsRequested = &[]string{}
			}
			if req.Description == nil {
				req.Description = new(string)
			}
			if req.Delivery == nil {
				fail(w, http.StatusBadRequest, "invalid_request", "delivery is required when replacing a stream")
				return
			}
		}
		oldMethod := s.Delivery.Method
		if err := apply(s, req, t.o.Dev, t.checkURL(ctx)); err != nil {
			fail(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		s.Updated = t.o.Now()
		ok, err := t.streams.replace(ctx, raw, s)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		if !ok {
			fail(w, http.StatusConflict, "invalid_request", "the stream changed meanwhile; read it and try again")
			return
		}
		if oldMethod != s.Delivery.Method {
			t.purge(ctx, s.ID)
		}
		web.WriteJSON(w, http.StatusOK, t.config(s))
	case http.MethodDelete:
		s, _, err := t.streams.owned(ctx, client, r.URL.Query().Get("stream_id"))
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		if err := t.streams.remove(ctx, s); err != nil {
			t.storeFail(w, r, err)
			return
		}
		t.purge(ctx, s.ID)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, PATCH, PUT, DELETE")
		fail(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
	}
}

func (t *Transmitter) purge(ctx context.Context, id string) {
	_ = t.push.Purge(ctx, id)
	_ = t.poll.Purge(ctx, id)
}

func (t *Transmitter) storeFail(w http.ResponseWriter, r *http.Request, err error) {
	if statusOf(err) == http.StatusNotFound {
		fail(w, http.StatusNotFound, "not_found", "no such stream for this client")
		return
	}
	t.log.ErrorContext(r.Context(), "ssf: store", "err", err)
	fail(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
}

type statusBody struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

func (t *Transmitter) handleStatus(w http.ResponseWriter, r *http.Request, e *clients.Entry) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet:
		s, _, err := t.streams.owned(ctx, e.Client.ID, r.URL.Query().Get("stream_id"))
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, statusBody{StreamID: s.ID, Status: s.Status, Reason: s.Reason})
	case http.MethodPost:
		var req statusBody
		if !readJSON(w, r, maxManagementBody, &req) {
			return
		}
		switch req.Status {
		case StatusEnabled, StatusPaused, StatusDisabled:
		default:
			fail(w, http.StatusBadRequest, "invalid_request", `status must be "enabled", "paused" or "disabled"`)
			return
		}
		if len(req.Reason) > maxReason {
			fail(w, http.StatusBadRequest, "invalid_request", "reason is too long")
			return
		}
		s, raw, err := t.streams.owned(ctx, e.Client.ID, req.StreamID)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		s.Status, s.Reason, s.Updated = req.Status, req.Reason, t.o.Now()
		ok, err := t.streams.replace(ctx, raw, s)
		if err != nil {
			t.storeFail(w, r, err)
			return
		}
		if !ok {
			fail(w, http.StatusConflict, "invalid_request", "the stream changed meanwhile; try again")
			return
		}
		if s.Status == StatusDisabled {
			// A disabled stream holds nothing (SSF 1.0 §8.1.2).
			t.purge(ctx, s.ID)
		}
		web.WriteJSON(w, http.StatusOK, statusBody{StreamID: s.ID, Status: s.Status, Reason: s.Reason})
	default:
		w.Header().Set("Allow", "GET, POST")
		fail(w, http.StatusMethodNotAllowed, "invalid_request", "method not allowed")
	}
}

func (t *Transmitter) handleVerify(w http.ResponseWriter, r *http.Request, e *clients.Entry) {
	ctx := r.Context()
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state,omitempty"`
	}
	if !readJSON(w, r, maxManagementBody, &req) {
		return
	}
	if len(req.State) > maxState {
		fail(w, http.StatusBadRequest, "invalid_request", "state is too long")
		return
	}
	s, _, err := t.streams.owned(ctx, e.Client.ID, req.StreamID)
	if err != nil {
		t.storeFail(w, r, err)
		return
	}
	if s.Status == StatusDisabled {
		fail(w, http.StatusForbidden, "invalid_request", "the stream is disabled")
		return
	}
	ok, err := t.o.Store.SetNX(ctx, "ssf:verify:"+s.ID, []byte("1"), t.o.MinVerificationInterval)
	if err != nil {
		t.storeFail(w, r, err)
		return
	}
	if !ok {
		w.Header().Set("Retry-After", itoa(int(t.o.MinVerificationInterval/time.Second)))
		fail(w, http.StatusTooManyRequests, "slow_down", "verification was requested too recently")
		return
	}
	if err := t.verify(ctx, s, e.Client, req.State); err != nil {
		t.storeFail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func itoa(n int) string { return strconv.Itoa(n) }

// pollRequest is RFC 8936 §2.1.
type pollRequest struct {
	MaxEvents         *int                       `json:"maxEvents,omitempty"`
	ReturnImmediately bool                       `json:"returnImmediately,omitempty"`
	Ack               []string                   `json:"ack,omitempty"`
	SetErrs           map[string]json.RawMessage `json:"setErrs,omitempty"`
}

// check bounds a poll request and returns how many SETs it asks for.
func (req *pollRequest) check() (int, error) {
	max := defaultPollEvents
	if req.MaxEvents != nil {
		max = *req.MaxEvents
	}
	if max < 0 || max > maxPollEvents {
		return 0, badConfig("maxEvents must be 0 to %d", maxPollEvents)
	}
	if len(req.Ack)+len(req.SetErrs) > maxAcks {
		return 0, badConfig("at most %d acknowledgements and errors together", maxAcks)
	}
	for _, j := range req.Ack {
		if j == "" || len(j) > maxStreamID {
			return 0, badConfig("ack: a jti is empty or too long")
		}
	}
	for j := range req.SetErrs {
		if j == "" || len(j) > maxStreamID {
			return 0, badConfig("setErrs: a jti is empty or too long")
		}
	}
	return max, nil
}

func (t *Transmitter) handlePoll(w http.ResponseWriter, r *http.Request, e *clients.Entry) {
	ctx := r.Context()
	var req pollRequest
	if !readJSON(w, r, maxPollBody, &req) {
		return
	}
	max, err := req.check()
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s, _, err := t.streams.owned(ctx, e.Client.ID, r.PathValue("stream"))
	if err != nil {
		t.storeFail(w, r, err)
		return
	}
	if s.Delivery.Method != MethodPoll {
		fail(w, http.StatusBadRequest, "invalid_request", "this stream uses push delivery")
		return
	}
	// Acknowledged and refused SETs are both done with (RFC 8936 §2.4:
	// an error report is final for that SET).
	done := append([]string(nil), req.Ack...)
	for jti := range req.SetErrs {
		done = append(done, jti)
	}
	if len(done) > 0 {
		if _, err := t.poll.Ack(ctx, s.ID, done...); err != nil {
			t.storeFail(w, r, err)
			return
		}
	}
	if len(req.SetErrs) > 0 {
		t.log.InfoContext(ctx, "ssf: receiver reported SET errors", "stream", s.ID, "count", len(req.SetErrs))
	}
	sets := map[string]string{}
	more := false
	if max > 0 && s.Status == StatusEnabled {
		deadline := time.Now().Add(t.o.PollWait)
		for {
			jobs, err := t.poll.Pending(ctx, s.ID, max+1)
			if err != nil {
				t.storeFail(w, r, err)
				return
			}
			if len(jobs) > max {
				jobs, more = jobs[:max], true
			}
			for _, j := range jobs {
				var sj setJob
				if err := json.Unmarshal(j.Payload, &sj); err != nil {
					continue
				}
				tok, err := t.sign(ctx, sj)
				if err != nil {
					t.storeFail(w, r, err)
					return
				}
				sets[j.ID] = tok
			}
			if len(sets) > 0 || req.ReturnImmediately || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"sets": sets, "moreAvailable": more})
}

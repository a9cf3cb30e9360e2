package ssf

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/watashi-id/watashi/idp/events"
)

// TestPayloads: what each outbox event becomes, one SET per event type.
func TestPayloads(t *testing.T) {
	at := time.Unix(1700000000, 0)
	cases := []struct {
		name string
		e    events.Event
		want map[string]map[string]any // type → subset of the payload
	}{
		{"logout", events.Event{Kind: events.SessionEnded, Reason: events.ReasonLogout, Time: at},
			map[string]map[string]any{EventSessionRevoked: {"initiating_entity": "user", "event_timestamp": int64(1700000000)}}},
		{"blocked", events.Event{Kind: events.SessionEnded, Reason: events.ReasonBlocked, Time: at},
			map[string]map[string]any{EventSessionRevoked: {"initiating_entity": "admin"}}},
		{"consent withdrawn", events.Event{Kind: events.ConsentWithdrawn, ClientIDs: []string{"rp"}, Time: at},
			map[string]map[string]any{EventSessionRevoked: {"initiating_entity": "user"}}},
		{"passkey added", events.Event{Kind: events.CredentialChanged, Time: at, Credential: &events.Credential{Type: "passkey", Change: "create", Ref: "x"}},
			map[string]map[string]any{EventCredentialChange: {"credential_type": "fido2-platform", "change_type": "create"}}},
		{"card removed", events.Event{Kind: events.CredentialChanged, Time: at, Credential: &events.Credential{Type: "jpki", Change: "delete", Ref: "x", Label: "JPKIAPICCTOKEN2"}},
			map[string]map[string]any{EventCredentialChange: {"credential_type": "x509", "change_type": "delete", "friendly_name": "JPKIAPICCTOKEN2"}}},
		{"model blocked", events.Event{Kind: events.CredentialChanged, Time: at, Credential: &events.Credential{Type: "jpki", Change: "revoke", Ref: "x"}},
			map[string]map[string]any{EventCredentialChange: {"change_type": "revoke", "initiating_entity": "admin"}, EventChangeRequired: {}}},
		{"facts stale", events.Event{Kind: events.FactsStale, Time: at},
			map[string]map[string]any{EventCredentialChange: {"credential_type": "x509", "change_type": "revoke", "initiating_entity": "system"}}},
		{"signed in", events.Event{Kind: events.SignedIn, Time: at}, nil},
		{"credential change without a credential", events.Event{Kind: events.CredentialChanged, Time: at}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := payloads(c.e)
			if len(got) != len(c.want) {
				t.Fatalf("%d events %v, want %d", len(got), got, len(c.want))
			}
			for typ, want := range c.want {
				p, ok := got[typ]
				if !ok {
					t.Fatalf("no %s in %v", typ, got)
				}
				for k, v := range want {
					if p[k] != v {
						t.Errorf("%s.%s = %v, want %v", typ, k, p[k], v)
					}
				}
			}
		})
	}
}

// TestApply: stream configurations, good and bad; a refusal leaves the
// stream as it was.
func TestApply(t *testing.T) {
	strs := func(s ...string) *[]string { return &s }
	str := func(s string) *string { return &s }
	noCheck := func(string) error { return nil }
	internal := func(string) error { return errors.New("its host resolves to an internal address") }
	cases := []struct {
		name  string
		req   streamRequest
		dev   bool
		check func(string) error
		err   string
	}{
		{name: "push", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "https://rp.example/ssf"}, EventsRequested: strs(EventSessionRevoked)}},
		{name: "poll", req: streamRequest{Delivery: &Delivery{Method: MethodPoll}}},
		{name: "http in dev", dev: true, req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "http://localhost/ssf"}}},
		{name: "no delivery", req: streamRequest{}, err: "delivery is required"},
		{name: "no method", req: streamRequest{Delivery: &Delivery{}}, err: "method is required"},
		{name: "unknown method", req: streamRequest{Delivery: &Delivery{Method: "urn:x"}}, err: "not supported"},
		{name: "http", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "http://rp.example/ssf"}}, err: "https"},
		{name: "relative", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "/ssf"}}, err: "absolute"},
		{name: "user info", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "https://u:p@rp.example/ssf"}}, err: "user information"},
		{name: "too long", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "https://rp.example/" + strings.Repeat("a", 2000)}}, err: "longer"},
		{name: "internal address", check: internal, req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "https://rp.example/ssf"}}, err: "internal"},
		{name: "header with newline", req: streamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: "https://rp.example/ssf", AuthorizationHeader: "a\nb"}}, err: "one line"},
		{name: "poll with URL", req: streamRequest{Delivery: &Delivery{Method: MethodPoll, EndpointURL: "https://rp.example/"}}, err: "transmitter supplies"},
		{name: "too many events", req: streamRequest{Delivery: &Delivery{Method: MethodPoll}, EventsRequested: strs(make([]string, 17)...)}, err: "at most"},
		{name: "empty event", req: streamRequest{Delivery: &Delivery{Method: MethodPoll}, EventsRequested: strs("")}, err: "empty"},
		{name: "control in description", req: streamRequest{Delivery: &Delivery{Method: MethodPoll}, Description: str("a\x00")}, err: "control"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Stream{ID: "s", Client: "c", Status: StatusEnabled}
			before, _ := json.Marshal(s)
			check := c.check
			if check == nil {
				check = noCheck
			}
			err := apply(s, c.req, c.dev, check)
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err %v, want %q", err, c.err)
			}
			// apply works on a copy in the handlers; the stream is then
			// not written. Here: a refusal of delivery leaves delivery.
			if c.req.Delivery != nil {
				var b Stream
				_ = json.Unmarshal(before, &b)
				if s.Delivery != b.Delivery {
					t.Fatalf("delivery changed by a refusal: %+v", s.Delivery)
				}
			}
		})
	}
}

// FuzzStreamRequest: whatever a receiver sends, decoding and validation
// never panic, and what passes is within the bounds.
func FuzzStreamRequest(f *testing.F) {
	f.Add([]byte(`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":"https://rp.example/e"},"events_requested":["x"]}`))
	f.Add([]byte(`{"delivery":{"method":"urn:ietf:rfc:8936"},"description":"d"}`))
	f.Add([]byte(`{"stream_id":"abc","events_requested":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req streamRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		s := &Stream{ID: "s", Client: "c", Status: StatusEnabled}
		if apply(s, req, false, func(string) error { return nil }) != nil {
			return
		}
		if len(s.EventsRequested) > maxEventsRequested || len(s.Description) > maxDescription ||
			len(s.Delivery.EndpointURL) > maxURILen || len(s.Delivery.AuthorizationHeader) > maxAuthHeader {
			t.Fatalf("accepted out of bounds: %+v", s)
		}
		if s.Delivery.Method != MethodPush && s.Delivery.Method != MethodPoll {
			t.Fatalf("accepted method %q", s.Delivery.Method)
		}
		if s.Delivery.Method == MethodPush && !strings.HasPrefix(s.Delivery.EndpointURL, "https://") {
			t.Fatalf("accepted endpoint %q", s.Delivery.EndpointURL)
		}
	})
}

// FuzzPollRequest: the poll body decoder never panics, and the bounds
// the handler enforces are computable on what it decodes.
func FuzzPollRequest(f *testing.F) {
	f.Add([]byte(`{"maxEvents":5,"returnImmediately":true,"ack":["a"],"setErrs":{"b":{"err":"x","description":"y"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pollRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		max, err := req.check()
		if err != nil {
			return
		}
		if max < 0 || max > maxPollEvents || len(req.Ack)+len(req.SetErrs) > maxAcks {
			t.Fatalf("accepted out of bounds: max %d, %d acks", max, len(req.Ack)+len(req.SetErrs))
		}
	})
}

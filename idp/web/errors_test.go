package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteError(t *testing.T) {
	cause := errors.New("redis 10.0.0.5:6379: connection refused")
	tests := []struct {
		name     string
		err      *Error
		wantBody string
	}{
		{
			name:     "OAuth error",
			err:      &Error{Status: http.StatusBadRequest, Code: "invalid_request", Message: "missing nonce"},
			wantBody: `{"error":"invalid_request","error_description":"missing nonce"}`,
		},
		{
			// The cause is for the log: it names operator detail.
			name:     "cause withheld",
			err:      &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Message: "try again later", Cause: cause},
			wantBody: `{"error":"temporarily_unavailable","error_description":"try again later"}`,
		},
		{
			name:     "no HTML escaping",
			err:      &Error{Status: http.StatusForbidden, Code: "access_denied", Message: "a <b> & c"},
			wantBody: `{"error":"access_denied","error_description":"a <b> & c"}`,
		},
		{
			name:     "empty message kept as a field",
			err:      &Error{Status: http.StatusUnauthorized, Code: "invalid_token"},
			wantBody: `{"error":"invalid_token","error_description":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, tt.err)
			res := rec.Result()
			if res.StatusCode != tt.err.Status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.err.Status)
			}
			if ct, cc := res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
				t.Fatalf("Content-Type %q, Cache-Control %q", ct, cc)
			}
			if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != tt.wantBody {
				t.Fatalf("body %s, want %s", got, tt.wantBody)
			}
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || len(m) != 2 {
				t.Fatalf("shape %v (%v)", m, err)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.5") {
				t.Fatal("the cause reached the client")
			}
		})
	}
}

func TestError(t *testing.T) {
	cause := errors.New("store down")
	for _, tt := range []struct {
		name string
		err  *Error
		want string
	}{
		{"with cause", &Error{Code: "server_error", Message: "try later", Cause: cause}, "server_error: try later: store down"},
		{"without cause", &Error{Code: "invalid_request", Message: "bad"}, "invalid_request: bad"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Fatalf("Error() = %q, want %q", got, tt.want)
			}
			var err error = tt.err
			if errors.Is(err, cause) != (tt.err.Cause != nil) {
				t.Fatal("Unwrap does not reach the cause")
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.err.Code {
				t.Fatal("errors.As")
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, map[string]any{"url": "https://rp.example.com/cb?a=1&b=2"})
	if rec.Code != http.StatusCreated || rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	if got := rec.Body.String(); got != `{"url":"https://rp.example.com/cb?a=1&b=2"}`+"\n" {
		t.Fatalf("body %q", got)
	}
}

func TestNoStore(t *testing.T) {
	h := http.Header{}
	h.Set("Cache-Control", "public, max-age=60")
	NoStore(h)
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Fatalf("%v", h)
	}
}

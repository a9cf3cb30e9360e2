package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/watashi-id/watashi/idp/clients"
)

// An API endpoint's failure is an OAuth error as written, or, for
// anything else and for an outage however wrapped, 503
// temporarily_unavailable; no parent's text is ever part of the answer.
func TestClassify(t *testing.T) {
	s := newTestServer(t)
	storeDown := errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		desc   string
	}{
		{"invalid_grant", oidc.ErrInvalidGrant().WithDescription("bad code"), http.StatusBadRequest, "invalid_grant", "bad code"},
		{"invalid_client", invalidClient("who are you"), http.StatusUnauthorized, "invalid_client", "who are you"},
		{"server_error", oidc.ErrServerError().WithParent(storeDown), http.StatusInternalServerError, "server_error", ""},
		{"a store error", fmt.Errorf("provider: load grant: %w", storeDown), http.StatusServiceUnavailable, temporarilyUnavailable, errTemporarilyUnavailable().Description},
		{"an outage inside an OAuth error", oidc.ErrInvalidClient().WithParent(fmt.Errorf("%w: jti: %w", errUnavailable, storeDown)), http.StatusServiceUnavailable, temporarilyUnavailable, errTemporarilyUnavailable().Description},
		{"the registry down", fmt.Errorf("%w: %w", clients.ErrUnavailable, storeDown), http.StatusServiceUnavailable, temporarilyUnavailable, errTemporarilyUnavailable().Description},
	} {
		ae := s.errs.classify(context.Background(), tc.err)
		if ae.status != tc.status || string(ae.err.ErrorType) != tc.code || ae.err.Description != tc.desc || ae.err.Parent != nil {
			t.Errorf("%s: %d %+v", tc.name, ae.status, ae.err)
		}
	}
}

// end_session's refusals keep only our descriptions, and an outage behind
// the library's hint check is a 503, not "id_token_hint invalid".
func TestEndSessionError(t *testing.T) {
	storeDown := errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")
	hintUnchecked := oidc.ErrInvalidRequest().WithDescription("id_token_hint invalid").WithParent(fmt.Errorf("%w: signing keys: %w", errUnavailable, storeDown))
	for _, tc := range []struct {
		name string
		err  error
		want string // the error as the client sees it
	}{
		{"a bad hint", oidc.ErrInvalidRequest().WithDescription("id_token_hint invalid").WithParent(storeDown), `{"error":"invalid_request","error_description":"id_token_hint invalid"}`},
		{"keys unavailable", hintUnchecked, "503"},
		{"registry unavailable", oidc.DefaultToServerError(errTemporarilyUnavailable(), ""), "503"},
		{"not an OAuth error", storeDown, "503"},
	} {
		got := endSessionError(tc.err)
		var se op.StatusError
		if errors.As(got, &se) {
			if tc.want != "503" || se.Error() != "Service Unavailable: "+errTemporarilyUnavailable().Error() {
				t.Errorf("%s: %v", tc.name, got)
			}
			continue
		}
		b, _ := json.Marshal(got)
		if string(b) != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, b, tc.want)
		}
	}
}

package signin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestParseDecline(t *testing.T) {
	for _, c := range []struct {
		name, body string
		reason     string // "" when refused
		code       string
	}{
		{"declined", `{"qr_token":"1.abc","reason":"declined"}`, codeDeclined, ""},
		{"codes differ", `{"qr_token":"1.abc","reason":"comparison_mismatch"}`, codeComparison, ""},
		{"no reason is a no", `{"qr_token":"1.abc"}`, codeDeclined, ""},
		{"unknown fields ignored", `{"qr_token":"1.abc","why":"x"}`, codeDeclined, ""},
		{"unknown reason", `{"qr_token":"1.abc","reason":"later"}`, "", codeInvalidRequest},
		{"a final code is no reason", `{"qr_token":"1.abc","reason":"revoked"}`, "", codeInvalidRequest},
		{"no token", `{"reason":"declined"}`, "", codeInvalidQRToken},
		{"empty token", `{"qr_token":""}`, "", codeInvalidQRToken},
		{"not an object", `["declined"]`, "", codeInvalidRequest},
		{"reason of the wrong type", `{"qr_token":"1.abc","reason":1}`, "", codeInvalidRequest},
		{"trailing data", `{"qr_token":"1.abc"}x`, "", codeInvalidRequest},
		{"empty", ``, "", codeInvalidRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := parseDecline([]byte(c.body))
			if c.reason != "" {
				if err != nil || d.Reason != c.reason {
					t.Fatalf("parseDecline = %+v, %v; want reason %s", d, err, c.reason)
				}
				return
			}
			if err == nil || err.Code != c.code || err.Status != http.StatusBadRequest || err.Final {
				t.Fatalf("parseDecline = %+v, %+v; want a request error %s", d, err, c.code)
			}
		})
	}
}

func FuzzParseDecline(f *testing.F) {
	f.Add([]byte(`{"qr_token":"1.abc","reason":"declined"}`))
	f.Add([]byte(`{"qr_token":"1.abc","reason":"comparison_mismatch"}`))
	f.Add([]byte(`{"qr_token":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDecline(b)
		if err != nil {
			if d != nil || err.Final || err.Status != http.StatusBadRequest {
				t.Fatalf("refusal %+v with %+v", err, d)
			}
			return
		}
		if d.QRToken == "" || (d.Reason != codeDeclined && d.Reason != codeComparison) {
			t.Fatalf("accepted %+v", d)
		}
		// What was accepted is what the body says.
		var raw map[string]any
		if json.Unmarshal(b, &raw) == nil && raw["qr_token"] != d.QRToken && !strings.Contains(string(b), `\u`) {
			t.Fatalf("token %q from %s", d.QRToken, b)
		}
	})
}

package web

import (
	"encoding/json"
	"net/http"
)

// Error is a refusal that keeps what the client may read apart from why
// it happened. Code and Message go to the client (a wallet, a relying
// party); Cause goes to the log only, because it may hold operator detail
// (a responder's URL, a store address) that no client should see.
type Error struct {
	Status  int
	Code    string
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// NoStore marks a response as not cacheable anywhere: it carries a token,
// a code or per-login state.
func NoStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// WriteJSON writes v as the whole response, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes {"error": code, "error_description": message}, the
// shape OAuth and the wallet protocol share.
func WriteError(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Message})
}

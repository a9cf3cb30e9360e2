package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// Names of the CSRF token's carriers.
const (
	// CSRFField is the hidden form field carrying the token.
	CSRFField = "csrf_token"
	// CSRFHeader carries the token for fetch() POSTs.
	CSRFHeader = "X-CSRF-Token"

	csrfCookieBase = "csrf"
	csrfSecretLen  = 32
)

func validCSRFSecret(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == csrfSecretLen
}

// CSRFToken returns the token a form must echo in its csrf_token field
// (or a fetch in X-CSRF-Token). It is a MAC of the browser's secret
// cookie, so a page on another site can neither read nor forge it. A
// browser without the cookie gets one on w: call it before the response's
// first byte is written.
func (k *Kit) CSRFToken(w http.ResponseWriter, r *http.Request) string {
	return k.CSRFTokenFor(w, r, "form")
}

// CSRFTokenFor binds the token to a purpose too, for endpoints that want
// tokens useless anywhere else.
func (k *Kit) CSRFTokenFor(w http.ResponseWriter, r *http.Request, purpose string) string {
	name := k.CookieName(csrfCookieBase)
	secret := ""
	if c, err := r.Cookie(name); err == nil && validCSRFSecret(c.Value) {
		secret = c.Value
	} else if v := pendingCookie(w.Header(), name); validCSRFSecret(v) {
		secret = v
	} else {
		var b [csrfSecretLen]byte
		_, _ = rand.Read(b[:])
		secret = base64.RawURLEncoding.EncodeToString(b[:])
		if sw, ok := w.(*statusWriter); ok && sw.wroteHeader {
			// The cookie is lost and every post of this form will be
			// refused: say so, or it looks like an attack.
			k.log.ErrorContext(r.Context(), "csrf cookie needed after the response started; the form will be refused")
		}
		k.SetCookie(w, name, secret, 0)
	}
	return base64.RawURLEncoding.EncodeToString(k.csrfMAC(secret, purpose))
}

func (k *Kit) csrfMAC(secret, purpose string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("watashi-csrf\x00"))
	m.Write([]byte(secret))
	m.Write([]byte{0})
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// CheckCSRF reports whether a state-changing request comes from one of
// our own pages. Two layers: the standard library's cross-origin check
// (Sec-Fetch-Site, else Origin against Host or the issuer's origin), and
// always a valid token bound to the secret cookie (double submit),
// compared in constant time.
func (k *Kit) CheckCSRF(r *http.Request) bool { return k.CheckCSRFFor(r, "form") }

// CheckCSRFFor checks a token made by CSRFTokenFor with the same purpose.
func (k *Kit) CheckCSRFFor(r *http.Request, purpose string) bool {
	if err := k.cop.Check(r); err != nil {
		return false
	}
	c, err := r.Cookie(k.CookieName(csrfCookieBase))
	if err != nil || !validCSRFSecret(c.Value) {
		return false
	}
	tok := r.Header.Get(CSRFHeader)
	if tok == "" {
		tok = r.PostFormValue(CSRFField)
	}
	got, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, k.csrfMAC(c.Value, purpose))
}

package web

import (
	"net/http"
	"time"
)

// CookieName gives every cookie the __Host- prefix outside development:
// the browser then refuses it unless it is Secure, host-only and Path=/,
// so a sibling subdomain cannot plant a binding, session or CSRF cookie.
func (k *Kit) CookieName(base string) string {
	if k.dev {
		return "watashi-" + base
	}
	return "__Host-watashi-" + base
}

// SetCookie writes a cookie that scripts cannot read and that follows a
// top-level navigation back from the RP (SameSite=Lax) but no cross-site
// subrequest. maxAge 0 makes a session cookie: closing the browser ends
// it, the safer default on the shared computers of libraries and city
// halls.
func (k *Kit) SetCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   !k.dev,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int((maxAge + time.Second - 1) / time.Second)
	}
	http.SetCookie(w, c)
}

// ClearCookie deletes a cookie set by SetCookie (same attributes, or
// browsers keep the original).
func (k *Kit) ClearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   !k.dev,
		SameSite: http.SameSiteLaxMode,
	})
}

// pendingCookie returns the value of a cookie this response already sets,
// so that a second look within one request sees what the first one made:
// the last Set-Cookie of that name, which is what the browser keeps, and
// "" if that one deletes it.
func pendingCookie(h http.Header, name string) string {
	value := ""
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == name {
			value = c.Value
			if c.MaxAge < 0 {
				value = ""
			}
		}
	}
	return value
}

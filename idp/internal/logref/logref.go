package logref

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
)

// refBytes is the reference length: 64 bits tell apart the residents one
// log window sees, and are far too short to be a stable public handle.
const refBytes = 8

type ref struct{ kind, value string }

// LogValue is what a handler without Wrap prints.
func (ref) LogValue() slog.Value { return slog.StringValue("redacted") }

// Account is the attribute "account_ref" for an account ID.
func Account(id string) slog.Attr { return slog.Any("account_ref", ref{"account", id}) }

// Cert is the attribute "cert_ref" for a certificate (its serial number or
// fingerprint).
func Cert(serialOrFingerprint string) slog.Attr {
	return slog.Any("cert_ref", ref{"cert", serialOrFingerprint})
}

// Key derives the reference key from a deployment secret (the cookie
// key): changing the secret changes every reference, so that references
// never outlive it.
func Key(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("watashi log reference key v1"))
	return m.Sum(nil)
}

type handler struct {
	next slog.Handler
	key  []byte
}

// Wrap returns a handler that writes references, under key, in place of
// the values given to Account and Cert, then hands the record to next.
func Wrap(next slog.Handler, key []byte) slog.Handler {
	return handler{next: next, key: key}
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = hasRef(a)
		return !found
	})
	if !found {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.rewrite(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.rewrite(a)
	}
	return handler{next: h.next.WithAttrs(out), key: h.key}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{next: h.next.WithGroup(name), key: h.key}
}

func hasRef(a slog.Attr) bool {
	switch a.Value.Kind() {
	case slog.KindLogValuer:
		_, ok := a.Value.Any().(ref)
		return ok
	case slog.KindGroup:
		for _, g := range a.Value.Group() {
			if hasRef(g) {
				return true
			}
		}
	}
	return false
}

func (h handler) rewrite(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindLogValuer:
		if r, ok := a.Value.Any().(ref); ok {
			return slog.String(a.Key, h.reference(r))
		}
	case slog.KindGroup:
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = h.rewrite(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}

func (h handler) reference(r ref) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(r.kind))
	m.Write([]byte{0})
	m.Write([]byte(r.value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:refBytes])
}

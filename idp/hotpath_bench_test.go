package idp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/watashi-id/watashi/idp/store"
)

// countedKV wraps kv in the store's own instrumentation and returns a
// function reading how many operations (round trips: a batch is one)
// went through it so far.
func countedKV(b *testing.B, kv store.KV) (store.KV, func() uint64) {
	reg := prometheus.NewRegistry()
	in, err := store.Instrument(kv, reg)
	if err != nil {
		b.Fatal(err)
	}
	return in, func() uint64 {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		for _, mf := range mfs {
			if mf.GetName() != "watashi_store_operation_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
		return n
	}
}

// BenchmarkHotPaths times what an RP repeats between logins, each on the
// memory store and on Redis, and reports store operations per request:
// userinfo, introspection (client_secret_basic, the secret's Argon2id
// cached as after the first request) and the refresh grant (rotation,
// a new access token and an ES256 ID token).
func BenchmarkHotPaths(b *testing.B) {
	for _, be := range []struct {
		name string
		kv   func(testing.TB) store.KV
	}{{"memory", memoryKV}, {"redis", redisKV}} {
		kv, ops := countedKV(b, be.kv(b))
		o := newBenchOP(b, kv)
		code, verifier := o.code("web")
		rec := o.exchange("web", code, verifier)
		if rec.Code != http.StatusOK {
			b.Fatalf("exchange: %d %s", rec.Code, rec.Body)
		}
		at := extractJSON(rec.Body.String(), "access_token")
		post := func(form url.Values) *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodPost, o.issuer+tokenPath, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("web", testSecret)
			return o.serve(req)
		}
		run := func(b *testing.B, one func(b *testing.B)) {
			one(b) // the warm-up: Argon2id of the secret, key loading
			b.ReportAllocs()
			start := ops()
			b.ResetTimer()
			for range b.N {
				one(b)
			}
			b.StopTimer()
			b.ReportMetric(float64(ops()-start)/float64(b.N), "store-ops/op")
		}
		b.Run("userinfo/"+be.name, func(b *testing.B) {
			run(b, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, o.issuer+userinfoPath, nil)
				req.Header.Set("Authorization", "Bearer "+at)
				if rec := o.serve(req); rec.Code != http.StatusOK {
					b.Fatalf("userinfo %d %s", rec.Code, rec.Body)
				}
			})
		})
		b.Run("introspection/"+be.name, func(b *testing.B) {
			run(b, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodPost, o.issuer+introspectPath, strings.NewReader(url.Values{"token": {at}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("web", testSecret)
				if rec := o.serve(req); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"active":true`) {
					b.Fatalf("introspection %d %s", rec.Code, rec.Body)
				}
			})
		})
		b.Run("refresh/"+be.name, func(b *testing.B) {
			code, verifier := o.code("web", "openid offline_access")
			rec := o.exchange("web", code, verifier)
			rt := extractJSON(rec.Body.String(), "refresh_token")
			if rt == "" {
				b.Fatalf("no refresh token: %s", rec.Body)
			}
			run(b, func(b *testing.B) {
				rec := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				if rec.Code != http.StatusOK {
					b.Fatalf("refresh %d %s", rec.Code, rec.Body)
				}
				rt = extractJSON(rec.Body.String(), "refresh_token")
			})
		})
	}
}

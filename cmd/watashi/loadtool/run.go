package loadtool

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/watashi-id/watashi/idp/walletsim"
	"github.com/watashi-id/watashi/pkibridge/jpkisim"
)

// Phases Run knows.
const (
	PhaseLogin         = "login"
	PhaseRefresh       = "refresh"
	PhaseUserinfo      = "userinfo"
	PhaseIntrospection = "introspection"
)

// Client authentication methods the tool can use.
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthPrivateKeyJWT = "private_key_jwt"
)

// Options select the load.
type Options struct {
	// Dir is a directory Setup wrote: the CAs, the clients' credentials
	// and the provider's configuration (issuer, telemetry, Redis).
	Dir         string
	Phases      []string
	Concurrency int
	// Residents is how many residents the workers sign in in turn (0:
	// DefaultResidentsPerWorker per worker). A few residents signing in
	// thousands of times would measure what the provider does for an
	// account with more open sessions and token families than its caps
	// allow (ending the oldest on every login), which real residents,
	// who sign in a few times a day, never reach.
	Residents int
	Duration  time.Duration
	// Rate caps operations per second across all workers (0: as fast as
	// the provider answers), to measure latency below the peak.
	Rate float64
	Auth string
	// Timeout bounds one operation (a whole login).
	Timeout time.Duration
	// MetricsURL and Redis override what the configuration names; "-"
	// turns the probe off.
	MetricsURL string
	Redis      string
	// Log receives progress lines.
	Log func(format string, args ...any)
}

// PhaseResult is one phase's figures. Per-operation figures are nil when
// their source (telemetry, Redis) could not be read.
type PhaseResult struct {
	Phase       string         `json:"phase"`
	Concurrency int            `json:"concurrency"`
	Auth        string         `json:"client_auth"`
	Rate        float64        `json:"target_rate,omitempty"`
	Seconds     float64        `json:"seconds"`
	Done        int            `json:"done"`
	PerSecond   float64        `json:"per_second"`
	P50ms       float64        `json:"p50_ms"`
	P95ms       float64        `json:"p95_ms"`
	P99ms       float64        `json:"p99_ms"`
	Errors      map[string]int `json:"errors"`
	ServerCPUms *float64       `json:"server_cpu_ms_per_op,omitempty"`
	StoreOps    *float64       `json:"store_round_trips_per_op,omitempty"`
	BgOps       *float64       `json:"background_round_trips_per_op,omitempty"`
	RedisCmds   *float64       `json:"redis_commands_per_op,omitempty"`
	RedisCPUms  *float64       `json:"redis_cpu_ms_per_op,omitempty"`
	RedisBytes  *float64       `json:"redis_bytes_per_op,omitempty"`
}

// Report is a whole run.
type Report struct {
	Issuer    string        `json:"issuer"`
	Started   time.Time     `json:"started"`
	Residents int           `json:"residents"`
	Phases    []PhaseResult `json:"phases"`
}

// fileConfig is what the tool reads of the provider's configuration.
type fileConfig struct {
	Issuer          string `yaml:"issuer"`
	TelemetryListen string `yaml:"telemetry_listen"`
	Store           struct {
		Type  string `yaml:"type"`
		Redis struct {
			Addrs []string `yaml:"addrs"`
		} `yaml:"redis"`
	} `yaml:"store"`
}

// DefaultResidentsPerWorker keeps a run of a few thousand logins below
// the provider's caps of 32 open sessions and 32 live token families
// per account and client.
const DefaultResidentsPerWorker = 64

// MaxResidents bounds the residents of one run (their enrolment is a
// proofing login each).
const MaxResidents = 8192

// worker is one simulated browser at a time: it signs in its residents
// in turn, and keeps the tokens of its last login for the other phases.
type worker struct {
	residents []*walletsim.Wallet
	next      int
	tokens    *tokens
}

// resident is the one whose turn it is to sign in.
func (w *worker) resident() *walletsim.Wallet {
	r := w.residents[w.next%len(w.residents)]
	w.next++
	return r
}

// Run performs the phases in order against the provider Setup's
// configuration describes.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Concurrency < 1 || o.Concurrency > 1024 {
		return nil, errors.New("concurrency must be between 1 and 1024")
	}
	if o.Residents == 0 {
		o.Residents = min(DefaultResidentsPerWorker*o.Concurrency, MaxResidents)
	}
	if o.Residents < o.Concurrency || o.Residents > MaxResidents {
		return nil, fmt.Errorf("residents must be between the concurrency (%d) and %d", o.Concurrency, MaxResidents)
	}
	if o.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	for _, p := range o.Phases {
		if !slices.Contains([]string{PhaseLogin, PhaseRefresh, PhaseUserinfo, PhaseIntrospection}, p) {
			return nil, fmt.Errorf("unknown phase %q (login, refresh, userinfo, introspection)", p)
		}
	}
	raw, err := os.ReadFile(filepath.Join(o.Dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	var fc fileConfig
	if err := yaml.Unmarshal(raw, &fc); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	t, err := newTarget(ctx, o, fc)
	if err != nil {
		return nil, err
	}
	pr := &probe{hc: &http.Client{Timeout: 10 * time.Second}}
	switch {
	case o.MetricsURL == "-":
	case o.MetricsURL != "":
		pr.metricsURL = o.MetricsURL
	case fc.TelemetryListen != "":
		pr.metricsURL = "http://" + fc.TelemetryListen + "/metrics"
	}
	switch {
	case o.Redis == "-":
	case o.Redis != "":
		pr.redis = redis.NewClient(&redis.Options{Addr: o.Redis})
	case fc.Store.Type == "redis" && len(fc.Store.Redis.Addrs) > 0:
		pr.redis = redis.NewClient(&redis.Options{Addr: fc.Store.Redis.Addrs[0]})
	}
	if pr.redis != nil {
		defer pr.redis.Close()
	}

	// The residents, shared out among the workers, each proofed on a
	// first login, which also remembers the consent.
	ws, err := enroll(o.Dir, o.Concurrency, o.Residents)
	if err != nil {
		return nil, err
	}
	o.Log("warming up: %d residents proofing, %d workers signing in", o.Residents, len(ws))
	if err := parallel(ctx, ws, func(ctx context.Context, w *worker) error {
		for _, r := range w.residents {
			if _, err := t.login(ctx, r, true); err != nil {
				return err
			}
		}
		tok, err := t.login(ctx, w.resident(), false)
		w.tokens = tok
		return err
	}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	rep := &Report{Issuer: t.issuer, Started: time.Now().UTC(), Residents: o.Residents}
	for _, phase := range o.Phases {
		o.Log("phase %s: %d workers for %v", phase, o.Concurrency, o.Duration)
		res, err := runPhase(ctx, o, t, pr, ws, phase)
		if err != nil {
			return rep, err
		}
		rep.Phases = append(rep.Phases, *res)
	}
	return rep, nil
}

func newTarget(ctx context.Context, o Options, fc fileConfig) (*target, error) {
	if fc.Issuer == "" {
		return nil, errors.New("the configuration names no issuer")
	}
	t := &target{issuer: strings.TrimSuffix(fc.Issuer, "/"), transport: &http.Transport{
		MaxIdleConns: 4 * o.Concurrency, MaxIdleConnsPerHost: 4 * o.Concurrency, IdleConnTimeout: time.Minute}}
	switch o.Auth {
	case "", AuthSecretBasic:
		s, err := os.ReadFile(filepath.Join(o.Dir, secretFile))
		if err != nil {
			return nil, err
		}
		t.clientID, t.secret = ClientBasic, strings.TrimSpace(string(s))
	case AuthPrivateKeyJWT:
		b, err := os.ReadFile(filepath.Join(o.Dir, clientKeyFile))
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", clientKeyFile)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		ek, ok := k.(*ecdsa.PrivateKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s: not an EC private key", clientKeyFile)
		}
		t.clientID, t.key = ClientJWT, ek
	default:
		return nil, fmt.Errorf("client auth %q: use client_secret_basic or private_key_jwt", o.Auth)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, b, err := do(ctx, t.client(false), "discovery", http.MethodGet, t.issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	if err := expect(res, b, "discovery", http.StatusOK); err != nil {
		return nil, err
	}
	var d struct {
		Authorize     string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
		Userinfo      string `json:"userinfo_endpoint"`
		Introspection string `json:"introspection_endpoint"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Authorize == "" || d.Token == "" || d.Userinfo == "" {
		return nil, fmt.Errorf("discovery: incomplete document")
	}
	t.authorize, t.token, t.userinfo, t.introspection = d.Authorize, d.Token, d.Userinfo, d.Introspection
	return t, nil
}

// enroll issues residents from the setup's simulator CAs and shares
// them out among n workers. The residents of one worker share its key
// pairs (their certificates, and so their accounts, differ): RSA key
// generation would otherwise make a large run's start-up slow, and the
// provider never compares keys across certificates.
func enroll(dir string, n, residents int) ([]*worker, error) {
	sig, err := jpkisim.LoadCA(filepath.Join(dir, caDir, "signature"))
	if err != nil {
		return nil, err
	}
	auth, err := jpkisim.LoadCA(filepath.Join(dir, caDir, "authentication"))
	if err != nil {
		return nil, err
	}
	ws := make([]*worker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i] = &worker{}
			sigKey, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				errs[i] = err
				return
			}
			authKey, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				errs[i] = err
				return
			}
			for r := i; r < residents; r += n {
				facts := jpkisim.Facts{Name: "負荷\u3000試験", Gender: "1", Birthdate: "319801231",
					Address: fmt.Sprintf("東京都千代田区霞が関一丁目%d番1号", r+1)}
				w, err := walletsim.EnrollWith(sig, auth, facts, walletsim.EnrollOptions{SigKey: sigKey, AuthKey: authKey})
				if err != nil {
					errs[i] = err
					return
				}
				ws[i].residents = append(ws[i].residents, w)
			}
		}()
	}
	wg.Wait()
	return ws, errors.Join(errs...)
}

// parallel runs fn once per worker at the same time.
func parallel(ctx context.Context, ws []*worker, fn func(context.Context, *worker) error) error {
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func runPhase(ctx context.Context, o Options, t *target, pr *probe, ws []*worker, phase string) (*PhaseResult, error) {
	op := func(ctx context.Context, w *worker) error {
		switch phase {
		case PhaseLogin:
			tok, err := t.login(ctx, w.resident(), false)
			if err == nil {
				w.tokens = tok
			}
			return err
		case PhaseRefresh:
			tok, err := t.refresh(ctx, w.tokens.RefreshToken)
			if err == nil {
				w.tokens = tok
			} else if tok, lerr := t.login(ctx, w.resident(), false); lerr == nil {
				// A family ended by a failure: start a new one.
				w.tokens = tok
			}
			return err
		case PhaseUserinfo:
			return t.userinfoRequest(ctx, w.tokens.AccessToken)
		default:
			return t.introspect(ctx, w.tokens.AccessToken)
		}
	}
	before, err := pr.sample(ctx)
	if err != nil {
		return nil, err
	}
	var pace <-chan time.Time
	if o.Rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
		defer tk.Stop()
		pace = tk.C
	}
	pctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   = map[string]int{}
		wg     sync.WaitGroup
		start  = time.Now()
		failed int
	)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if pace != nil {
					select {
					case <-pace:
					case <-pctx.Done():
						return
					}
				}
				if pctx.Err() != nil {
					return
				}
				octx, ocancel := context.WithTimeout(ctx, o.Timeout)
				t0 := time.Now()
				err := op(octx, w)
				d := time.Since(t0)
				ocancel()
				mu.Lock()
				if err != nil {
					errs[errorKind(err)]++
					failed++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, err := pr.sample(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	n := len(lat)
	r := &PhaseResult{Phase: phase, Concurrency: o.Concurrency, Auth: o.Auth, Rate: o.Rate, Seconds: elapsed.Seconds(),
		Done: n, PerSecond: float64(n) / elapsed.Seconds(), Errors: errs,
		P50ms: pct(lat, .50), P95ms: pct(lat, .95), P99ms: pct(lat, .99)}
	if r.Auth == "" {
		r.Auth = AuthSecretBasic
	}
	all := float64(n + failed)
	if all > 0 {
		per := func(v float64) *float64 { v /= all; return &v }
		if before.metricOK && after.metricOK {
			r.ServerCPUms = per((after.cpu - before.cpu) * 1000)
			r.StoreOps = per(after.storeOps - before.storeOps)
			r.BgOps = per(after.bgOps - before.bgOps)
		}
		if before.redisOK && after.redisOK {
			r.RedisCmds = per(after.redisCmd - before.redisCmd)
			r.RedisCPUms = per((after.redisCPU - before.redisCPU) * 1000)
			if phase == PhaseLogin {
				r.RedisBytes = per(after.redisMem - before.redisMem)
			}
		}
	}
	return r, nil
}

func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

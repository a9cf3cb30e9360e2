package loadtool

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// sample is what the provider and Redis had spent at one instant.
type sample struct {
	cpu      float64 // provider process CPU seconds
	storeOps float64 // store round trips of the provider's request handlers
	bgOps    float64 // store round trips of its background work
	redisCPU float64 // redis-server CPU seconds (user + system)
	redisCmd float64 // commands redis-server processed
	redisMem float64 // used_memory bytes
	redisOK  bool
	metricOK bool
}

// probe reads the provider's telemetry listener and Redis.
type probe struct {
	metricsURL string
	redis      *redis.Client
	hc         *http.Client
}

func (p *probe) sample(ctx context.Context) (sample, error) {
	var s sample
	if p.metricsURL != "" {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
		if err != nil {
			return s, err
		}
		res, err := p.hc.Do(req)
		if err != nil {
			return s, fmt.Errorf("metrics: %w", err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return s, fmt.Errorf("metrics: HTTP %d", res.StatusCode)
		}
		m, err := parseMetrics(res.Body, "process_cpu_seconds_total",
			`watashi_store_round_trips_total{origin="request"}`, `watashi_store_round_trips_total{origin="background"}`)
		if err != nil {
			return s, fmt.Errorf("metrics: %w", err)
		}
		s.cpu, s.storeOps, s.bgOps, s.metricOK = m[0], m[1], m[2], true
	}
	if p.redis != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		info, err := p.redis.Info(ctx, "cpu", "memory", "stats").Result()
		if err != nil {
			return s, fmt.Errorf("redis INFO: %w", err)
		}
		f := parseInfo(info)
		s.redisCPU = f["used_cpu_user"] + f["used_cpu_sys"]
		s.redisCmd = f["total_commands_processed"]
		s.redisMem = f["used_memory"]
		s.redisOK = true
	}
	return s, nil
}

// parseMetrics sums, for each name, every sample of that metric in the
// Prometheus text format: all its label sets, or, for a name written
// with its labels (`m{l="v"}`), the samples with exactly those.
func parseMetrics(r io.Reader, names ...string) ([]float64, error) {
	out := make([]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for i, n := range names {
			if !strings.HasPrefix(line, n) || (len(line) > len(n) && line[len(n)] != ' ' && (line[len(n)] != '{' || strings.HasSuffix(n, "}"))) {
				continue
			}
			rest := line[len(n):]
			if j := strings.LastIndexByte(rest, '}'); j >= 0 {
				rest = rest[j+1:]
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			out[i] += v
		}
	}
	return out, sc.Err()
}

// parseInfo reads the numeric fields of Redis INFO.
func parseInfo(info string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		}
	}
	return out
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

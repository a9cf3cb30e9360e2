package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const composeDir = "../compose"

// The Compose file's fields this test reads (the Compose Specification
// names); unknown fields are refused, so a typo in the file fails here.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Networks map[string]*struct {
		Internal bool `json:"internal"`
		IPAM     *struct {
			Config []struct {
				Subnet string `json:"subnet"`
			} `json:"config"`
		} `json:"ipam"`
	} `json:"networks"`
	Volumes map[string]*struct{}             `json:"volumes"`
	Secrets map[string]struct{ File string } `json:"secrets"`
}

type composeService struct {
	Image       string                                `json:"image"`
	Build       *struct{ Context, Dockerfile string } `json:"build"`
	Command     []string                              `json:"command"`
	Restart     string                                `json:"restart"`
	ReadOnly    bool                                  `json:"read_only"`
	User        string                                `json:"user"`
	CapDrop     []string                              `json:"cap_drop"`
	CapAdd      []string                              `json:"cap_add"`
	SecurityOpt []string                              `json:"security_opt"`
	Tmpfs       []string                              `json:"tmpfs"`
	DependsOn   any                                   `json:"depends_on"`
	Volumes     []string                              `json:"volumes"`
	Secrets     []string                              `json:"secrets"`
	Environment map[string]string                     `json:"environment"`
	Ports       []string                              `json:"ports"`
	Networks    []string                              `json:"networks"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return &c
}

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	w, r, tls := c.Services["watashi"], c.Services["redis"], c.Services["tls"]
	if w.Build == nil || r.Image == "" || tls.Image == "" {
		t.Fatalf("services %v: want watashi (built here), redis and tls", keysOf(c.Services))
	}
	if w.Build.Context != "../.." || w.Build.Dockerfile != "Dockerfile" {
		t.Errorf("watashi builds from %+v, want the repository's Dockerfile", w.Build)
	}
	for name, s := range c.Services {
		if s.Build == nil && !pinned(s.Image) {
			t.Errorf("%s: image %q not pinned to a version", name, s.Image)
		}
		if !s.ReadOnly {
			t.Errorf("%s: root file system not read-only", name)
		}
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 {
			t.Errorf("%s: capabilities drop %v add %v, want drop ALL and add none", name, s.CapDrop, s.CapAdd)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: no-new-privileges not set", name)
		}
		if s.Restart == "" {
			t.Errorf("%s: no restart policy", name)
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("%s: secret %s is not declared", name, sec)
			}
		}
	}
	// Watashi: the image's unprivileged user, secrets as files only.
	if w.User != "65532:65532" {
		t.Errorf("watashi user %q", w.User)
	}
	for k, v := range w.Environment {
		if !strings.HasSuffix(k, "_FILE") {
			t.Errorf("watashi environment %s: only *_FILE paths, secrets never in the environment", k)
			continue
		}
		sec, ok := strings.CutPrefix(v, "/run/secrets/")
		if !ok || !slices.Contains(w.Secrets, sec) {
			t.Errorf("%s=%s is not one of the service's secrets %v", k, v, w.Secrets)
		}
	}
	for _, want := range []string{"WATASHI_PAIRWISE_KEY_FILE", "WATASHI_TOKEN_KEY_FILE", "WATASHI_COOKIE_KEY_FILE", "WATASHI_KEK_FILE", "WATASHI_REDIS_PASSWORD_FILE"} {
		if w.Environment[want] == "" {
			t.Errorf("watashi: %s not set", want)
		}
	}
	// Telemetry only on loopback; the public port only through the front.
	for _, p := range w.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("watashi publishes %s beyond the host's loopback", p)
		}
	}
	if len(r.Ports) > 0 {
		t.Errorf("redis publishes %v", r.Ports)
	}
	deps, _ := w.DependsOn.(map[string]any)
	if cond, _ := deps["redis"].(map[string]any)["condition"].(string); cond != "service_healthy" {
		t.Errorf("watashi starts before Redis is healthy: %v", w.DependsOn)
	}
	if r.Healthcheck == nil || len(r.Healthcheck.Test) == 0 {
		t.Error("redis has no health check")
	}
	// Redis only on the internal network, reachable by Watashi alone.
	if !slices.Equal(r.Networks, []string{"backend"}) || c.Networks["backend"] == nil || !c.Networks["backend"].Internal {
		t.Errorf("redis networks %v; backend internal: %v", r.Networks, c.Networks["backend"])
	}
	if slices.Contains(tls.Networks, "backend") {
		t.Error("the TLS front can reach Redis")
	}
	// Every secret is a file in the git-ignored folders init.sh fills
	// (cmd/watashi's TestComposeStackAndMonitoring runs init.sh and
	// checks each file).
	for name, s := range c.Secrets {
		if !strings.HasPrefix(s.File, "./secrets/") && !strings.HasPrefix(s.File, "./certs/") {
			t.Errorf("secret %s: %s is outside secrets/ and certs/", name, s.File)
		}
	}
	ignore, _ := os.ReadFile(filepath.Join(composeDir, ".gitignore"))
	for _, d := range []string{"/secrets/", "/certs/"} {
		if !strings.Contains(string(ignore), d) {
			t.Errorf("%s is not git-ignored", d)
		}
	}
	// The trusted proxy range in watashi.yaml is the front's subnet.
	cfg, _ := os.ReadFile(filepath.Join(composeDir, "watashi.yaml"))
	subnet := c.Networks["frontend"].IPAM.Config[0].Subnet
	if !strings.Contains(string(cfg), strconv.Quote(subnet)) {
		t.Errorf("watashi.yaml does not trust the front's subnet %s", subnet)
	}
}

// Redis in the stack keeps durable records: AOF, no eviction, the ACL.
func TestComposeRedisConf(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(composeDir, "redis.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction", "aclfile /run/secrets/redis_acl"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(b) {
			t.Errorf("redis.conf lacks %q", want)
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

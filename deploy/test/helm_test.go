package deploytest

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/watashi-id/watashi/idp/config"
)

const chartDir = "../helm/watashi"

// A key of the right size for every secret (hex of 32 bytes).
const testKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// minimal is what an operator must give: issuer, Redis, revocation
// sources and where they are, and the secrets.
func minimal() map[string]any {
	return map[string]any{
		"config": map[string]any{
			"issuer": "https://id.example.jp",
			"store":  map[string]any{"redis": map[string]any{"addrs": []any{"redis-master.redis:6379"}}},
			"pki":    map[string]any{"revocation": map[string]any{"ocsp": []any{"https://ocsp.example.jp/auth"}}},
		},
		"secrets": map[string]any{"pairwiseKey": testKey, "tokenKey": testKey, "cookieKey": testKey, "kek": testKey, "redisPassword": "redis-pass"},
		"networkPolicy": map[string]any{"egress": map[string]any{
			"redis":      map[string]any{"podLabels": map[string]any{"app.kubernetes.io/name": "redis"}, "namespaceLabels": map[string]any{"kubernetes.io/metadata.name": "redis"}},
			"revocation": map[string]any{"cidrs": []any{"203.0.113.0/24"}},
		}},
	}
}

// full turns everything on: an existing Secret, Sentinel, HPA, ingress,
// ServiceMonitor, relying parties' egress.
func full() map[string]any {
	v := minimal()
	v["secrets"] = map[string]any{"existingSecret": "watashi-keys"}
	cfg := v["config"].(map[string]any)
	cfg["store"] = map[string]any{"redis": map[string]any{"addrs": []any{"s1:26379", "s2:26379", "s3:26379"}, "master_name": "watashi",
		"wait_replicas": 2, "wait_timeout": "800ms"}}
	v["autoscaling"] = map[string]any{"enabled": true, "minReplicas": 3, "maxReplicas": 9}
	v["ingress"] = map[string]any{"enabled": true, "className": "nginx",
		"hosts": []any{map[string]any{"host": "id.example.jp", "paths": []any{map[string]any{"path": "/", "pathType": "Prefix"}}}},
		"tls":   []any{map[string]any{"secretName": "id-tls", "hosts": []any{"id.example.jp"}}}}
	v["serviceMonitor"] = map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}
	v["prometheusRule"] = map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}
	np := v["networkPolicy"].(map[string]any)["egress"].(map[string]any)
	np["relyingParties"] = map[string]any{"cidrs": []any{"0.0.0.0/0"}}
	np["redis"] = map[string]any{"cidrs": []any{"10.20.0.0/16"}}
	v["image"] = map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)}
	return v
}

// rendered is one chart rendering, every manifest decoded into its
// Kubernetes type (unknown fields refused).
type rendered struct {
	deploy   *appsv1.Deployment
	svc      *corev1.Service
	cm       *corev1.ConfigMap
	secret   *corev1.Secret
	sa       *corev1.ServiceAccount
	pdb      *policyv1.PodDisruptionBudget
	hpa      *autoscalingv2.HorizontalPodAutoscaler
	np       *networkingv1.NetworkPolicy
	ingress  *networkingv1.Ingress
	monitor  *serviceMonitor
	rules    *prometheusRule
	manifest map[string]string
}

// prometheusRule is the Prometheus Operator's PrometheusRule, decoded
// strictly: a field the rules do not have is an error.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec ruleGroups `json:"spec"`
}

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// serviceMonitor is the Prometheus Operator's CRD, the fields the chart
// sets (the operator's Go types would bring a module of their own).
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		JobLabel string `json:"jobLabel"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func render(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: "id", Namespace: "watashi", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	r := &rendered{manifest: out}
	for name, body := range out {
		if !strings.HasSuffix(name, ".yaml") || strings.TrimSpace(body) == "" {
			continue
		}
		for _, doc := range strings.Split(body, "\n---") {
			if strings.TrimSpace(strings.ReplaceAll(doc, "---", "")) == "" {
				continue
			}
			var meta struct{ Kind string }
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			var target any
			switch meta.Kind {
			case "Deployment":
				r.deploy = &appsv1.Deployment{}
				target = r.deploy
			case "Service":
				r.svc = &corev1.Service{}
				target = r.svc
			case "ConfigMap":
				r.cm = &corev1.ConfigMap{}
				target = r.cm
			case "Secret":
				r.secret = &corev1.Secret{}
				target = r.secret
			case "ServiceAccount":
				r.sa = &corev1.ServiceAccount{}
				target = r.sa
			case "PodDisruptionBudget":
				r.pdb = &policyv1.PodDisruptionBudget{}
				target = r.pdb
			case "HorizontalPodAutoscaler":
				r.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
				target = r.hpa
			case "NetworkPolicy":
				r.np = &networkingv1.NetworkPolicy{}
				target = r.np
			case "Ingress":
				r.ingress = &networkingv1.Ingress{}
				target = r.ingress
			case "ServiceMonitor":
				r.monitor = &serviceMonitor{}
				target = r.monitor
			case "PrometheusRule":
				r.rules = &prometheusRule{}
				target = r.rules
			default:
				t.Fatalf("%s: unexpected kind %q", name, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
				t.Fatalf("%s (%s) does not decode into the Kubernetes type: %v\n%s", name, meta.Kind, err, doc)
			}
		}
	}
	return r, nil
}

func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := render(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

func TestHelmLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{"minimal": minimal(), "full": full()} {
		res := lint.RunAll(chartDir, vals, "watashi")
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: helm lint: %s", name, m)
			}
		}
	}
}

func TestHelmRefusesIncompleteValues(t *testing.T) {
	noIssuer := minimal()
	delete(noIssuer["config"].(map[string]any), "issuer")
	noSecret := minimal()
	delete(noSecret["secrets"].(map[string]any), "tokenKey")
	noRedisEgress := minimal()
	noRedisEgress["networkPolicy"].(map[string]any)["egress"].(map[string]any)["redis"] = map[string]any{}
	noOCSPEgress := minimal()
	noOCSPEgress["networkPolicy"].(map[string]any)["egress"].(map[string]any)["revocation"] = map[string]any{}
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"chart defaults", map[string]any{}, "is required"},
		{"no issuer", noIssuer, "config.issuer is required"},
		{"a created secret without its key", noSecret, "secrets.tokenKey"},
		{"network policy without Redis", noRedisEgress, "networkPolicy.egress.redis"},
		{"network policy without OCSP", noOCSPEgress, "networkPolicy.egress.revocation.cidrs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestHelmDeployment(t *testing.T) {
	for name, vals := range map[string]map[string]any{"minimal": minimal(), "full": full()} {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, vals)
			if r.deploy == nil || r.svc == nil || r.cm == nil || r.sa == nil || r.pdb == nil || r.np == nil {
				t.Fatalf("missing manifests: %v", keys(r.manifest))
			}
			pod := r.deploy.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers", len(pod.Containers))
			}
			c := pod.Containers[0]

			// Probes on the telemetry port.
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if ports["http"] != 8080 || ports["telemetry"] != 9090 {
				t.Errorf("container ports %v", ports)
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s probe missing or not HTTP", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "telemetry" {
					t.Errorf("%s probe %s on %s, want %s on telemetry", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
				}
			}

			// Non-root, read-only, nothing to escalate.
			psc := pod.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext %+v", psc)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
				*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("container securityContext %+v", sc)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the service account token is mounted; Watashi never calls the API")
			}
			if len(pod.TopologySpreadConstraints) != 2 {
				t.Errorf("topology spread %v", pod.TopologySpreadConstraints)
			}
			if s := r.deploy.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
				t.Errorf("rolling update %+v: a rollout must not lower capacity", s)
			}

			// Secret wiring: every *_FILE points into the secret volume at a
			// key the volume projects, from the right Secret.
			wantSecret := "id-watashi"
			if ex, _ := vals["secrets"].(map[string]any)["existingSecret"].(string); ex != "" {
				wantSecret = ex
				if r.secret != nil {
					t.Error("a Secret is rendered although secrets.existingSecret is set")
				}
				if _, ok := r.deploy.Spec.Template.Annotations["checksum/secret"]; ok {
					t.Error("checksum/secret for a Secret the chart does not make")
				}
			} else if r.secret == nil || r.secret.Name != wantSecret {
				t.Fatalf("secret %v, want %s", r.secret, wantSecret)
			}
			var secretVol *corev1.SecretVolumeSource
			var mount string
			for _, v := range pod.Volumes {
				if v.Secret != nil {
					secretVol = v.Secret
					for _, m := range c.VolumeMounts {
						if m.Name == v.Name {
							mount = m.MountPath
							if !m.ReadOnly {
								t.Error("secret volume mounted read-write")
							}
						}
					}
				}
			}
			if secretVol == nil || secretVol.SecretName != wantSecret || mount == "" {
				t.Fatalf("secret volume %+v at %q, want secret %s", secretVol, mount, wantSecret)
			}
			projected := map[string]bool{}
			for _, it := range secretVol.Items {
				projected[mount+"/"+it.Path] = true
				if r.secret != nil {
					if _, ok := r.secret.Data[it.Key]; !ok {
						t.Errorf("volume projects key %s the Secret lacks", it.Key)
					}
				}
			}
			files := map[string]string{}
			for _, e := range c.Env {
				if strings.HasSuffix(e.Name, "_FILE") {
					files[e.Name] = e.Value
					if !projected[e.Value] {
						t.Errorf("%s=%s is not a file of the secret volume %v", e.Name, e.Value, projected)
					}
				}
				if e.ValueFrom != nil || (strings.Contains(e.Name, "KEY") && !strings.HasSuffix(e.Name, "_FILE")) {
					t.Errorf("secret %s in the environment: only file paths belong there", e.Name)
				}
			}
			for _, want := range []string{"WATASHI_PAIRWISE_KEY_FILE", "WATASHI_TOKEN_KEY_FILE", "WATASHI_COOKIE_KEY_FILE", "WATASHI_KEK_FILE", "WATASHI_REDIS_PASSWORD_FILE"} {
				if files[want] == "" {
					t.Errorf("%s not set", want)
				}
			}
			if _, ok := r.deploy.Spec.Template.Annotations["checksum/config"]; !ok {
				t.Error("no checksum/config annotation")
			}

			// The configuration the pod reads is valid under the production
			// rules, with the secrets it will find.
			cfg := validateConfig(t, r, files)
			if rd := cfg.Store.Redis; name == "full" && (rd.WaitReplicas != 2 || rd.WaitTimeout != 800*time.Millisecond) {
				t.Errorf("the wait settings did not reach the config: %d, %v", rd.WaitReplicas, rd.WaitTimeout)
			} else if name != "full" && (rd.WaitReplicas != 0 || rd.WaitTimeout != 500*time.Millisecond) {
				t.Errorf("the chart's wait defaults: %d, %v", rd.WaitReplicas, rd.WaitTimeout)
			}

			// Selectors agree.
			sel := r.deploy.Spec.Selector.MatchLabels
			for k, v := range sel {
				if r.deploy.Spec.Template.Labels[k] != v || r.svc.Spec.Selector[k] != v || r.pdb.Spec.Selector.MatchLabels[k] != v || r.np.Spec.PodSelector.MatchLabels[k] != v {
					t.Errorf("selector %s=%s does not match everywhere", k, v)
				}
			}
			checkNetworkPolicy(t, r.np)

			if name == "full" {
				if r.deploy.Spec.Replicas != nil {
					t.Error("replicas set although the HPA owns them")
				}
				if r.hpa == nil || r.hpa.Spec.ScaleTargetRef.Name != r.deploy.Name || r.hpa.Spec.MinReplicas == nil || *r.hpa.Spec.MinReplicas != 3 {
					t.Errorf("HPA %+v", r.hpa)
				}
				if r.ingress == nil || r.ingress.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != r.svc.Name ||
					r.ingress.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "http" || len(r.ingress.Spec.TLS) != 1 {
					t.Errorf("ingress %+v", r.ingress)
				}
				if m := r.monitor; m == nil || len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "telemetry" || m.Spec.Endpoints[0].Path != "/metrics" ||
					m.Metadata.Labels["release"] != "prom" || m.Spec.Selector.MatchLabels["app.kubernetes.io/instance"] != "id" {
					t.Errorf("ServiceMonitor %+v", m)
				}
				if img := c.Image; !strings.Contains(img, "@sha256:") {
					t.Errorf("image %s, want the digest", img)
				}
			} else {
				if r.hpa != nil || r.ingress != nil || r.monitor != nil || r.rules != nil {
					t.Error("optional resources rendered by default")
				}
				if r.deploy.Spec.Replicas == nil || *r.deploy.Spec.Replicas != 2 {
					t.Errorf("replicas %v, want 2", r.deploy.Spec.Replicas)
				}
			}
		})
	}
}

// The chart carries the monitoring kit's alert rules as a PrometheusRule,
// off by default: the same rules, their job selector following the name
// the ServiceMonitor gives the scrape job.
func TestHelmPrometheusRule(t *testing.T) {
	kit, err := os.ReadFile("../monitoring/watashi-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	chartCopy, err := os.ReadFile(chartDir + "/files/watashi-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kit, chartCopy) {
		t.Fatal("deploy/helm/watashi/files/watashi-alerts.yaml differs from deploy/monitoring/watashi-alerts.yaml: copy the kit's rules into the chart")
	}
	var want ruleGroups
	if err := yaml.UnmarshalStrict(kit, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Groups) == 0 || len(want.Groups[0].Rules) < 10 {
		t.Fatalf("the kit has %d groups", len(want.Groups))
	}
	for _, tc := range []struct {
		name, nameOverride, job, wantJob string
	}{
		{"chart name", "", "", "watashi"},
		{"name override", "idp", "", "idp"},
		{"job of its own", "", "prometheus-watashi", "prometheus-watashi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := full()
			v["nameOverride"] = tc.nameOverride
			v["prometheusRule"].(map[string]any)["job"] = tc.job
			r := mustRender(t, v)
			if r.rules == nil || r.rules.Kind != "PrometheusRule" || r.rules.APIVersion != "monitoring.coreos.com/v1" || r.rules.Metadata.Labels["release"] != "prom" {
				t.Fatalf("PrometheusRule %+v", r.rules)
			}
			// The ServiceMonitor names the job after this label.
			if tc.job == "" && r.svc.Labels[r.monitor.Spec.JobLabel] != tc.wantJob {
				t.Errorf("the scrape job is %q, the rules select %q", r.svc.Labels[r.monitor.Spec.JobLabel], tc.wantJob)
			}
			got := r.rules.Spec
			jobs := 0
			for gi, g := range got.Groups {
				for ri, rule := range g.Rules {
					if strings.Contains(rule.Expr, `job="`) {
						jobs++
						if !strings.Contains(rule.Expr, `job="`+tc.wantJob+`"`) {
							t.Errorf("%s selects another job: %s", rule.Alert, rule.Expr)
						}
					}
					w := want.Groups[gi].Rules[ri]
					if rule.Alert != w.Alert || rule.Expr != strings.ReplaceAll(w.Expr, `job="watashi"`, `job="`+tc.wantJob+`"`) ||
						rule.For != w.For || !reflect.DeepEqual(rule.Labels, w.Labels) || !reflect.DeepEqual(rule.Annotations, w.Annotations) {
						t.Errorf("rule %s differs from the kit's", rule.Alert)
					}
				}
			}
			if len(got.Groups) != len(want.Groups) || len(got.Groups[0].Rules) != len(want.Groups[0].Rules) || jobs == 0 {
				t.Fatalf("%d groups, %d job selectors", len(got.Groups), jobs)
			}
		})
	}
	if r := mustRender(t, minimal()); r.rules != nil {
		t.Error("a PrometheusRule by default: it needs the Prometheus Operator")
	}
}

// A change of the configuration or of a chart-made secret changes the
// pod template (so the pods roll); nothing else does.
func TestHelmChecksumsRollPods(t *testing.T) {
	ann := func(vals map[string]any) map[string]string {
		return mustRender(t, vals).deploy.Spec.Template.Annotations
	}
	base := ann(minimal())
	again := ann(minimal())
	if base["checksum/config"] != again["checksum/config"] || base["checksum/secret"] != again["checksum/secret"] {
		t.Fatal("checksums differ between two renderings of the same values")
	}
	cfg := minimal()
	cfg["config"].(map[string]any)["log"] = map[string]any{"level": "debug"}
	if a := ann(cfg); a["checksum/config"] == base["checksum/config"] || a["checksum/secret"] != base["checksum/secret"] {
		t.Error("a config change must change checksum/config only")
	}
	sec := minimal()
	sec["secrets"].(map[string]any)["cookieKey"] = strings.Repeat("ff", 32)
	if a := ann(sec); a["checksum/secret"] == base["checksum/secret"] || a["checksum/config"] != base["checksum/config"] {
		t.Error("a secret change must change checksum/secret only")
	}
}

func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("policy types %v", np.Spec.PolicyTypes)
	}
	egressPorts := map[int]bool{}
	for _, e := range np.Spec.Egress {
		if len(e.To) == 0 {
			t.Errorf("egress rule to anywhere: %+v", e)
		}
		for _, p := range e.Ports {
			egressPorts[p.Port.IntValue()] = true
		}
	}
	for _, p := range []int{6379, 26379, 443, 80, 53} {
		if !egressPorts[p] {
			t.Errorf("no egress on port %d (Redis, Sentinel, OCSP/CRL, DNS)", p)
		}
	}
	ingressPorts := map[string]bool{}
	for _, in := range np.Spec.Ingress {
		if len(in.From) == 0 {
			t.Errorf("ingress rule from anywhere: %+v", in)
		}
		for _, p := range in.Ports {
			ingressPorts[p.Port.String()] = true
		}
	}
	if !ingressPorts["http"] || !ingressPorts["telemetry"] || len(ingressPorts) != 2 {
		t.Errorf("ingress ports %v", ingressPorts)
	}
}

// validateConfig loads the rendered watashi.yaml with Watashi's own
// loader and validates it as `watashi serve` would without --dev, with
// secret files at the paths the pod gets them.
func validateConfig(t *testing.T, r *rendered, files map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "watashi.yaml")
	if err := os.WriteFile(path, []byte(r.cm.Data["watashi.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	for env := range files {
		f := filepath.Join(dir, env)
		if err := os.WriteFile(f, []byte(testKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(env, f)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the rendered config does not load: %v\n%s", err, r.cm.Data["watashi.yaml"])
	}
	if err := cfg.Validate(false); err != nil {
		t.Fatalf("the rendered config is invalid: %v\n%s", err, r.cm.Data["watashi.yaml"])
	}
	pub, tel := cfg.ListenAddrs()
	if pub != "0.0.0.0:8080" || tel != "0.0.0.0:9090" {
		t.Errorf("listen %s, telemetry %s", pub, tel)
	}
	return cfg
}

func keys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		if strings.TrimSpace(v) != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

package deploytest

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

const repoRoot = "../.."

// dockerfile is the parsed Dockerfile: its stages with ARG defaults
// expanded into the base image names.
type dockerfile struct {
	stages []instructions.Stage
	args   map[string]string
}

func parseDockerfile(t *testing.T, path string) *dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("instructions %s: %v", path, err)
	}
	d := &dockerfile{stages: stages, args: map[string]string{}}
	for _, a := range meta {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.args[kv.Key] = *kv.Value
			}
		}
	}
	return d
}

var reArgRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func (d *dockerfile) expand(s string) string {
	return reArgRef.ReplaceAllStringFunc(s, func(m string) string {
		return d.args[reArgRef.FindStringSubmatch(m)[1]]
	})
}

// pinned reports whether an image reference names an exact version: a
// digest, or a tag with a version number (never latest, never bare).
func pinned(ref string) bool {
	if ref == "scratch" || strings.Contains(ref, "@sha256:") {
		return true
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return false
	}
	tag := ref[i+1:]
	return tag != "latest" && regexp.MustCompile(`^v?\d+\.\d+\.\d+`).MatchString(tag)
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	if len(d.stages) < 2 {
		t.Fatalf("%d stages: the image must be multi-stage", len(d.stages))
	}
	for _, s := range d.stages {
		base := d.expand(s.BaseName)
		if !pinned(base) && !slices.ContainsFunc(d.stages, func(o instructions.Stage) bool { return o.Name == base }) {
			t.Errorf("stage %q: base %q is not pinned to a version or digest", s.Name, base)
		}
		for _, c := range s.Commands {
			if add, ok := c.(*instructions.AddCommand); ok {
				for _, src := range add.SourcePaths {
					if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
						t.Errorf("ADD from a URL (%s): fetch in a RUN with a checksum, or COPY", src)
					}
				}
			}
		}
	}

	// The build: CGO off where go build runs.
	cgoOff := false
	for _, s := range d.stages[:len(d.stages)-1] {
		env := map[string]string{}
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					env[kv.Key] = kv.Value
				}
			case *instructions.RunCommand:
				line := strings.Join(c.CmdLine, " ")
				if strings.Contains(line, "go build") && (env["CGO_ENABLED"] == "0" || strings.Contains(line, "CGO_ENABLED=0")) {
					cgoOff = true
				}
			}
		}
	}
	if !cgoOff {
		t.Error("no `go build` with CGO_ENABLED=0: the binary must be static")
	}

	// The final stage: no shell to run anything with, a numeric
	// non-root user, both ports, exec-form entrypoint.
	final := d.stages[len(d.stages)-1]
	if base := d.expand(final.BaseName); base != "scratch" && !strings.Contains(base, "distroless") {
		t.Errorf("final base %q: want scratch or distroless (no shell)", base)
	}
	var user string
	exposed := map[string]bool{}
	var entrypoint *instructions.EntrypointCommand
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			t.Errorf("RUN in the final stage (%s): it would need a shell", strings.Join(c.CmdLine, " "))
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				exposed[strings.TrimSuffix(p, "/tcp")] = true
			}
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.CopyCommand:
			for _, src := range c.SourcePaths {
				if b := filepath.Base(src); b == "sh" || b == "bash" || b == "busybox" || strings.HasPrefix(src, "/bin") {
					t.Errorf("COPY of %s into the final stage: no shell", src)
				}
			}
			if c.From == "" {
				t.Errorf("COPY %v from the build context into the final stage: only build outputs belong there", c.SourcePaths)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot can only check numbers)", user)
	}
	for _, p := range []string{"8080", "9090"} {
		if !exposed[p] {
			t.Errorf("port %s not exposed (public and telemetry)", p)
		}
	}
	if entrypoint == nil || entrypoint.PrependShell {
		t.Error("ENTRYPOINT missing or in shell form")
	}
}

// The passwd line the image ships names the USER it runs as.
func TestDockerfilePasswdMatchesUser(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`'watashi:x:(\d+):(\d+):`).FindSubmatch(b)
	u := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindSubmatch(b)
	if m == nil || u == nil || string(m[1]) != string(u[1]) || string(m[2]) != string(u[2]) {
		t.Fatalf("passwd line %q and USER %q disagree", m, u)
	}
}

// The build context after .dockerignore still builds, and the binary
// built as the Dockerfile builds it is static (no ELF interpreter, no
// shared libraries): it runs on scratch.
func TestDockerBuildContextBuildsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ignore := readDockerignore(t)
	ctx := t.TempDir()
	root, _ := filepath.Abs(repoRoot)
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if ignored(ignore, rel) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(ctx, rel)
		if e.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{".git", "deploy", "idp/store/store_test.go"} {
		if _, err := os.Stat(filepath.Join(ctx, gone)); err == nil {
			t.Errorf("%s reaches the build context", gone)
		}
	}
	out := filepath.Join(t.TempDir(), "watashi")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, "./cmd/watashi")
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in the filtered context: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}

func readDockerignore(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pats []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore exception %q: the test's matcher does not model exceptions", l)
		}
		pats = append(pats, l)
	}
	return pats
}

// ignored matches the .dockerignore subset the file uses: plain paths,
// "*" within a name, and a leading "**/" for any depth.
func ignored(pats []string, rel string) bool {
	rel = filepath.ToSlash(rel)
	for _, p := range pats {
		if any, ok := strings.CutPrefix(p, "**/"); ok {
			if m, _ := filepath.Match(any, filepath.Base(rel)); m {
				return true
			}
			continue
		}
		if m, _ := filepath.Match(p, rel); m {
			return true
		}
	}
	return false
}

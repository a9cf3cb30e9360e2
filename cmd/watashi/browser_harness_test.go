package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The harness of the real-browser test: Debian's Chromium driven through
// the demo by chromedp. Every wait is on an element, never a sleep; every
// failure leaves a screenshot, the page's HTML and the tab's console next
// to the screenshots, and names the URL the tab was at.

const (
	// chromiumPath is where Debian's chromium package installs it.
	chromiumPath = "/usr/bin/chromium"
	// browserBudget bounds one browser test, both languages and both
	// browser starts included: every page is checked with axe-core and
	// shot at two sizes.
	browserBudget = 240 * time.Second
	// browserStepLimit bounds one step (a click and the page it leads to).
	browserStepLimit = 30 * time.Second
)

// findChromium returns the browser to drive, skipping the test when there
// is none unless WATASHI_REQUIRE_CHROMIUM is set (CI sets it).
func findChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("WATASHI_REQUIRE_CHROMIUM") != "" {
		t.Fatalf("chromium not found at %s or on PATH, and WATASHI_REQUIRE_CHROMIUM is set (apt-get install chromium fonts-noto-cjk)", chromiumPath)
	}
	t.Skipf("chromium not found at %s or on PATH; set WATASHI_REQUIRE_CHROMIUM=1 to make this a failure", chromiumPath)
	return ""
}

// screenshotDir is $WATASHI_SCREENSHOT_DIR (make test sets it to
// out/screenshots) or a temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WATASHI_SCREENSHOT_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("WATASHI_SCREENSHOT_DIR: %v", err)
	}
	return dir
}

// syncBuffer collects output written from several goroutines (the demo's
// handlers log concurrently; chromium's output arrives from a pipe).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedDemo is startDemo with the demo's logs kept, so that the
// test can check them for personal data.
func startLoggedDemo(t *testing.T, logs *syncBuffer) *demo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDemoWith(ln.Addr().String(), slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(d.handler)
	ts.Listener.Close()
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(func() { d.store.Close() })
	if ts.URL != d.issuer {
		t.Fatalf("server %s, issuer %s", ts.URL, d.issuer)
	}
	return d
}

// browserSession is one Chromium with a fresh profile.
type browserSession struct {
	t        *testing.T
	name     string // "ja" or "en": prefixes artefacts
	shots    string
	deadline time.Time
	out      *syncBuffer // chromium's stdout and stderr
	ctx      context.Context
	tabs     []*browserTab
	// audited counts the axe-core checks run; axeProblems are the
	// violations found, reported together at the end (reportAxe).
	audited     int
	axeProblems []string
}

// browserTab is one tab and the console messages it printed.
type browserTab struct {
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string
}

func (tb *browserTab) consoleLines() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.console...)
}

// startBrowser starts Chromium headless with a fresh profile, sending
// acceptLang as Accept-Language (the --lang flag does not reach the
// headless network stack; --accept-lang does). It returns the first tab.
// The browser is closed when the test ends.
func startBrowser(t *testing.T, parent context.Context, chrome, acceptLang, name, shots string, deadline time.Time) (*browserSession, *browserTab) {
	t.Helper()
	b := &browserSession{t: t, name: name, shots: shots, deadline: deadline, out: &syncBuffer{}}
	// The allocator outlives the step deadline a little, so that a step
	// that runs out of time still gets its failure screenshot.
	hardCtx, cancelHard := context.WithDeadline(parent, deadline.Add(15*time.Second))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(hardCtx,
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		// The login tab waits in the background while the phone tab is in
		// front; it must keep receiving its events at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("accept-lang", acceptLang),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(b.out),
	)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	// Cleanups run last-registered first: the browser exits before
	// t.TempDir removes its profile.
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelHard()
	})
	b.ctx = ctx
	tab := &browserTab{name: "main", ctx: ctx}
	b.tabs = append(b.tabs, tab)
	// The first run binds the browser's life to the context it is given,
	// so it gets the browser context itself (bounded by hardCtx), not a
	// step deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\nchromium output:\n%s", chrome, err, tail(b.out.String(), 2000))
	}
	b.watchConsole(tab)
	return b, tab
}

// newTab opens another tab in the same browser (same profile, cookies).
func (b *browserSession) newTab(name string) *browserTab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	tab := &browserTab{name: name, ctx: ctx}
	b.tabs = append(b.tabs, tab)
	if err := chromedp.Do(ctx); err != nil { // opens the tab, for its context's lifetime
		b.fail(b.tabs[0], "open tab "+name, err)
	}
	b.watchConsole(tab)
	return tab
}

// watchConsole records the tab's console messages (CSP violations and
// script errors show up there) until the tab closes.
func (b *browserSession) watchConsole(tab *browserTab) {
	msgs := chromedp.Console(tab.ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			tab.mu.Lock()
			tab.console = append(tab.console, fmt.Sprintf("%s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
			tab.mu.Unlock()
		}
	}()
}

// do runs actions in a tab within the step limit; a failure is fatal and
// leaves artefacts.
func (b *browserSession) do(tab *browserTab, step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	browserRun(b, tab, step, chromedp.Steps(actions...))
}

// errorShown matches what the pages show when a step went wrong: the
// provider's and the phone simulator's alerts, the RP's error card.
const errorShown = `main .error[role="alert"], .card.err`

// arrive runs actions (a click, a navigation) and waits for the page that
// should follow, identified by the CSS selector want. A page showing an
// error instead ends the step at once, with what it says.
func (b *browserSession) arrive(tab *browserTab, step, want string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(tab, step, append(actions, chromedp.WaitVisible(chromedp.CSS(want+", "+errorShown)))...)
	if !browserRun(b, tab, step, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, want))) {
		b.fail(tab, step, fmt.Errorf("an error page instead of %s", want))
	}
}

// browserRun runs one action that returns a value (a text, an
// attribute) in a tab, like do.
func browserRun[T any](b *browserSession, tab *browserTab, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	limit := time.Now().Add(browserStepLimit)
	if b.deadline.Before(limit) {
		limit = b.deadline
	}
	ctx, cancel := context.WithDeadline(tab.ctx, limit)
	defer cancel()
	start := time.Now()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(tab, step, err)
	}
	if d := time.Since(start); d > time.Second {
		b.t.Logf("%s: step %q took %s", b.name, step, d.Round(10*time.Millisecond))
	}
	return v
}

// check fails the step with every problem found, after saving artefacts.
func (b *browserSession) check(tab *browserTab, step string, problems []string) {
	b.t.Helper()
	if len(problems) > 0 {
		b.fail(tab, step, fmt.Errorf("%s", strings.Join(problems, "\n\t")))
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fail saves a screenshot, the page's HTML and the console of the tab,
// then stops the test naming the step and the tab's URL.
func (b *browserSession) fail(tab *browserTab, step string, cause error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, 10*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		loc = "(unknown: " + err.Error() + ")"
	}
	// What the page itself says went wrong (the provider's error page).
	if said, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("h1, [role=alert]")).map(function (e) { return e.innerText.trim(); }).join(" / ")`)); err == nil && said != "" {
		loc += " showing: " + said
	}
	base := filepath.Join(b.shots, "FAIL-"+b.name+"-"+strings.Trim(unsafeName.ReplaceAllString(step, "-"), "-"))
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		if os.WriteFile(base+".png", png, 0o644) == nil {
			b.t.Logf("failure screenshot: %s.png", base)
		}
	}
	if html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement ? document.documentElement.outerHTML : ""`)); err == nil {
		if os.WriteFile(base+".html", []byte(html), 0o644) == nil {
			b.t.Logf("failure page HTML: %s.html", base)
		}
	}
	for _, other := range b.tabs {
		if lines := other.consoleLines(); len(lines) > 0 {
			b.t.Logf("console of tab %s:\n\t%s", other.name, strings.Join(lines, "\n\t"))
		}
	}
	b.t.Fatalf("%s: step %q failed in tab %s at %s:\n\t%v\nchromium output (tail):\n%s",
		b.name, step, tab.name, loc, cause, tail(b.out.String(), 1500))
}

// screenshot saves a full-page PNG of the tab as name and logs its path.
func (b *browserSession) screenshot(tab *browserTab, name string) string {
	b.t.Helper()
	png := browserRun(b, tab, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.shots, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/watashi-id/watashi/idp/store/storetest"
)

// axe-core checks every page the browser tests visit, in both languages
// and at both screen sizes. Its script comes from npm, pinned by
// testdata/axe-core/package-lock.json (.ci/run installs it); it is
// injected through the DevTools protocol, which the pages' CSP does not
// govern.

const axeDir = "../../testdata/axe-core"

var (
	axeOnce   sync.Once
	axeSource string
	axeErr    error
)

// axeScript returns axe-core's script, installing the pinned package
// with npm when it is missing. Without npm the test fails when Chromium is
// required (CI), and skips otherwise.
func axeScript(t *testing.T) string {
	t.Helper()
	axeOnce.Do(func() {
		path := filepath.Join(axeDir, "node_modules", "axe-core", "axe.min.js")
		if _, err := os.Stat(path); err != nil {
			npm, lerr := exec.LookPath("npm")
			if lerr != nil {
				axeErr = fmt.Errorf("%s is missing and npm is not installed: run npm ci in %s", path, axeDir)
				return
			}
			cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline")
			cmd.Dir = axeDir
			if out, err := cmd.CombinedOutput(); err != nil {
				axeErr = fmt.Errorf("npm ci in %s: %v\n%s", axeDir, err, out)
				return
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			axeErr = err
			return
		}
		if !bytes.HasPrefix(b, []byte("/*! axe v")) {
			axeErr = fmt.Errorf("%s is not axe-core", path)
			return
		}
		axeSource = string(b)
	})
	if axeErr != nil {
		if storetest.RequireEnv("WATASHI_REQUIRE_CHROMIUM") {
			t.Fatalf("axe-core: %v", axeErr)
		}
		t.Skipf("axe-core: %v", axeErr)
	}
	return axeSource
}

// viewport is a screen size the pages are checked at.
type viewport struct {
	name          string // "" for the desktop, "-390" for the phone
	width, height int64
}

var (
	desktop = viewport{"", 1280, 900}
	phone   = viewport{"-390", 390, 844}
)

// setViewport makes the tab's layout viewport w×h (the phone), or puts
// the window's own size back (the desktop): chromedp's EmulateReset leaves
// the last override in force.
func (b *browserSession) setViewport(tab *browserTab, v viewport) {
	b.t.Helper()
	b.do(tab, "viewport "+v.name, func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		if v == desktop {
			_, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
			return chromedp.Void{}, err
		}
		_, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
			Width: v.width, Height: v.height, DeviceScaleFactor: 1, Mobile: false})
		return chromedp.Void{}, err
	})
	// The new size reaches the page with its next layout: wait for it.
	limit, cancel := context.WithTimeout(tab.ctx, 5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(limit, chromedp.Poll[bool](fmt.Sprintf(`window.innerWidth === %d`, v.width),
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		w := browserRun(b, tab, "read the viewport", chromedp.Evaluate[int64](`window.innerWidth`))
		b.fail(tab, "viewport "+v.name, fmt.Errorf("the page is %d px wide, want %d: %v", w, v.width, err))
	}
}

// axeViolation is one rule axe found broken, with where.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeRun is axe-core over the whole document, every rule of WCAG 2.2 A
// and AA and axe's best practices, returning the violations.
const axeRun = `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
	resultTypes: ["violations"]}).then(function (r) {
	return r.violations.map(function (v) {
		return {id: v.id, impact: v.impact || "", help: v.help,
			nodes: v.nodes.map(function (n) { return n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " "); })};
	});
})`

// audit checks the page in the tab at both screen sizes: ready shows once
// the page is usable, axe-core must find nothing, and a full-page
// screenshot of each size is saved as <name>-<page language>[-390].png. A page
// with violations is recorded, and the test fails at its end with every
// page's list (b.axeProblems). check, when given, runs at each size.
func (b *browserSession) audit(tab *browserTab, name, ready string, check func(v viewport)) {
	b.t.Helper()
	src := axeScript(b.t)
	lang := browserRun(b, tab, "read the page's language", chromedp.Evaluate[string](`document.documentElement.lang`))
	for _, v := range []viewport{desktop, phone} {
		b.setViewport(tab, v)
		b.do(tab, name+" ready"+v.name, chromedp.WaitVisible(chromedp.CSS(ready)))
		if check != nil {
			check(v)
		}
		file := b.screenshot(tab, name+"-"+lang+v.name+".png")
		b.checkShotWidth(file, v)
		if !browserRun(b, tab, "is axe loaded", chromedp.Evaluate[bool](`typeof axe !== "undefined"`)) {
			browserRun(b, tab, "load axe", chromedp.Evaluate[bool](src+";true"))
		}
		found := browserRun(b, tab, "axe "+name+v.name, chromedp.Evaluate[[]axeViolation](axeRun, chromedp.EvalAwaitPromise))
		b.audited++
		for _, f := range found {
			b.axeProblems = append(b.axeProblems, fmt.Sprintf("%s (%s, %d px): %s [%s] %s\n\t\t%s",
				name, lang, v.width, f.ID, f.Impact, f.Help, strings.Join(f.Nodes, "\n\t\t")))
		}
	}
	b.setViewport(tab, desktop)
}

// checkShotWidth makes sure a screenshot shows the size it claims.
func (b *browserSession) checkShotWidth(file string, v viewport) {
	b.t.Helper()
	f, err := os.Open(file)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || int64(cfg.Width) != v.width {
		b.t.Fatalf("%s is %d px wide (%v), want %d", file, cfg.Width, err, v.width)
	}
}

// aboveTheFold reports the elements of selectors whose bottom edge is
// below the first screen, or that are missing.
func (b *browserSession) aboveTheFold(tab *browserTab, selectors ...string) []string {
	b.t.Helper()
	var problems []string
	for _, sel := range selectors {
		bottom := browserRun(b, tab, "where is "+sel, chromedp.Evaluate[float64](fmt.Sprintf(
			`(function () { var e = document.querySelector(%q); if (!e) { return -1; } window.scrollTo(0, 0); return e.getBoundingClientRect().bottom; })()`, sel)))
		height := browserRun(b, tab, "screen height", chromedp.Evaluate[float64](`window.innerHeight`))
		switch {
		case bottom < 0:
			problems = append(problems, sel+" is missing")
		case bottom > height:
			problems = append(problems, fmt.Sprintf("%s ends at y=%.0f px, below the first screen (%.0f px)", sel, bottom, height))
		}
	}
	return problems
}

// reportAxe fails the test with every violation found, after all pages
// were seen.
func (b *browserSession) reportAxe() {
	b.t.Helper()
	if b.audited == 0 {
		b.t.Fatal("no page was checked with axe")
	}
	if len(b.axeProblems) > 0 {
		b.t.Errorf("axe-core found %d violations in %d page checks:\n\t%s", len(b.axeProblems), b.audited, strings.Join(b.axeProblems, "\n\t"))
		return
	}
	b.t.Logf("%s: axe-core: 0 violations in %d page checks", b.name, b.audited)
}

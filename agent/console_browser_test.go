package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The web console in a real headless Chromium (Debian's chromium, driven over CDP by
// chromedp) against a real clbd with its managed haproxy and real backends in two zones.

// requireChromium skips without chromium, except in CI, where make test-deps installs it.
func requireChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; make test-deps installs it")
		}
		t.Skip("chromium is not installed")
	}
	return path
}

// browser starts a headless Chromium for the test (a fresh profile; on this closed network
// without background networking, QUIC, component updates or sync) and returns a tab. It is
// killed at cleanup.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := requireChromium(t)
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	// The first Run starts the browser; bounded by the tab's start rather than a timeout on
	// this context (a timeout here would end the browser with it).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			cancelTab()
			cancelAlloc()
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(30 * time.Second):
		cancelTab()
		cancelAlloc()
		t.Fatal("chromium did not start within 30 s")
	}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills chromium and waits for it
	})
	return ctx
}

// timeLimit is a context derived from a tab's that ends after limit (ending it stops the
// action, not the browser).
func timeLimit(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, limit)
}

// waitJS waits until the JavaScript expression is truthy in the page, at most limit.
func waitJS(t *testing.T, ctx context.Context, limit time.Duration, what, expr string) time.Duration {
	t.Helper()
	start := time.Now()
	c, cancel := timeLimit(ctx, limit+2*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(limit))); err != nil {
		t.Fatalf("waiting %s for %s: %v", limit, what, err)
	}
	return time.Since(start)
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := timeLimit(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := timeLimit(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func sessionCookies(t *testing.T, ctx context.Context, base string) []*network.Cookie {
	t.Helper()
	c, cancel := timeLimit(ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(c, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/ui/"}})
	if err != nil {
		t.Fatalf("get cookies: %v", err)
	}
	var out []*network.Cookie
	for _, ck := range res.Cookies {
		if ck.Name == "clb_session" {
			out = append(out, ck)
		}
	}
	return out
}

func login(t *testing.T, ctx context.Context, key, secret string) {
	t.Helper()
	do(t, ctx, "log in as "+key,
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SetValue(chromedp.ID("login-key"), key),
		chromedp.SendKeys(chromedp.ID("login-secret"), secret),
		chromedp.Click(chromedp.ID("login-submit")),
	)
}

// member is the JavaScript for the row of a member on the page.
func member(name string) string {
	return fmt.Sprintf(`document.querySelector('tr.member[data-service="web"][data-member=%q]')`, name)
}

// TestConsoleInBrowser: a wrong key is refused on the page with no session cookie set; an
// admin logs in (cookie HttpOnly and SameSite=Strict, invisible to the page, nothing in web
// storage); a member registered with clb_register shows on the page within a second; its
// backend stopped, the page shows it down; disabling its zone by a click moves the traffic
// through haproxy to the other zone's member only; a register-scoped key sees the services
// but no buttons. A screenshot is saved for the closing note (t.TempDir, and
// $CLB_SCREENSHOT_DIR when set).
func TestConsoleInBrowser(t *testing.T) {
	s := newScenarioWith(t, true, `    health_check:
      interval: 5s
      timeout: 1s
      healthy_threshold: 2
      unhealthy_threshold: 2
`)
	ctx := browser(t)
	base := "http://" + s.c.api

	do(t, ctx, "open the console", chromedp.Navigate(base+"/ui"))
	waitJS(t, ctx, 5*time.Second, "the login form", `!document.getElementById('login-view').hidden`)

	// A wrong key is refused on the page, and no session cookie is set.
	login(t, ctx, "admin", "not-the-secret")
	waitJS(t, ctx, 5*time.Second, "the refusal", `document.getElementById('login-error').textContent.includes('refused: key id or secret is wrong')`)
	if ck := sessionCookies(t, ctx, base); len(ck) != 0 {
		t.Fatalf("a refused login set %d session cookies", len(ck))
	}
	if hidden := evalJS[bool](t, ctx, `document.getElementById('main-view').hidden`); !hidden {
		t.Fatal("the console shows its main view after a refused login")
	}

	login(t, ctx, "admin", adminSecret)
	waitJS(t, ctx, 5*time.Second, "the main view", `!document.getElementById('main-view').hidden && document.querySelector('section.service[data-service="web"]') !== null`)
	ck := sessionCookies(t, ctx, base)
	if len(ck) != 1 || !ck[0].HTTPOnly || ck[0].SameSite != network.CookieSameSiteStrict || ck[0].Path != "/ui/" || ck[0].Secure {
		t.Fatalf("session cookie = %+v, want one, HttpOnly, SameSite=Strict, Path=/ui/, not Secure over plain HTTP", ck)
	}
	if got := evalJS[string](t, ctx, `document.cookie + '|' + localStorage.length + '|' + sessionStorage.length + '|' + document.getElementById('login-secret').value`); got != "|0|0|" {
		t.Errorf("page sees cookie|localStorage|sessionStorage|secret field = %q, want nothing", got)
	}
	if html := evalJS[string](t, ctx, `document.documentElement.outerHTML`); strings.Contains(html, adminSecret) {
		t.Error("the secret is in the page")
	}

	// Registered through the real API (clb_register): on the page within a second.
	s.register("b1", "--zone", "a")
	took := waitJS(t, ctx, time.Second, "b1 on the page", member("b1")+` !== null`)
	t.Logf("b1 on the page %s after clb_register returned", took.Round(time.Millisecond))
	s.register("b2", "--zone", "b")
	s.register("b3", "--zone", "b")
	waitJS(t, ctx, 20*time.Second, "b1, b2 and b3 up", `['b1','b2','b3'].every(n => { const r = document.querySelector('tr.member[data-member="'+n+'"]'); return r && r.dataset.health === 'up'; })`)

	// Gentle traffic (about 50 requests a second) from here to the screenshot, for the charts;
	// haproxy retries a refused connection on another member and a disabled zone's members
	// finish what they have, so none of it fails.
	stopTraffic := pacedLoad(s.front, 20*time.Millisecond)
	defer stopTraffic()

	// Its backend stopped: the page shows b3 down.
	s.stopBackend["b3"]()
	took = waitJS(t, ctx, 25*time.Second, "b3 down on the page", member("b3")+`?.querySelector('td.health')?.textContent === 'down'`)
	t.Logf("b3 down on the page %s after its backend stopped", took.Round(time.Millisecond))
	wantServed(t, s.front, 30, "b1", "b2")

	// Disable zone b by a click: traffic moves to zone a's member only.
	do(t, ctx, "click disable on zone b", chromedp.Click(chromedp.CSS(`button.zone-toggle[data-service="web"][data-zone="b"][data-action="disable"]`)))
	waitJS(t, ctx, 10*time.Second, "zone b disabled on the page",
		`document.getElementById('message').textContent.includes('zone b of web disabled (applied)') && document.querySelector('tr.zone[data-zone="b"] td.state')?.textContent === 'disabled'`)
	wantServed(t, s.front, 30, "b1")
	code, out := s.admin("GET", "/v1/services/web", nil)
	disabled := []string{}
	zones, _ := out["zones"].([]any)
	for _, z := range zones {
		if z := z.(map[string]any); z["enabled"] == false {
			disabled = append(disabled, z["name"].(string))
		}
	}
	if code != 200 || len(disabled) != 1 || disabled[0] != "b" {
		t.Errorf("API after the click: %d, disabled zones %v, want [b]", code, disabled)
	}
	waitJS(t, ctx, 5*time.Second, "the apply in the recent applies", `document.querySelectorAll('#applies tbody tr').length > 0`)

	// The charts: b1 served requests, so its request-rate chart (from GET /v1/stats) has a line
	// with a maximum above zero, and its response-time chart has a line too.
	waitJS(t, ctx, 15*time.Second, "b1's charts with its traffic", `(() => {
		const r = `+member("b1")+`;
		const rate = r && r.querySelector('.chart.rate svg');
		const ms = r && r.querySelector('.chart.ms svg polyline');
		if (!rate || !ms || !rate.querySelector('polyline')) return false;
		const t = rate.querySelector('title');
		return t && parseFloat(t.textContent.split('max ')[1]) > 0;
	})()`)
	// Some history for the screenshot: six samples of b1 (about 12 s at the 2 s poll).
	waitJS(t, ctx, 20*time.Second, "six samples in b1's chart", member("b1")+`.querySelector('.chart.rate polyline').getAttribute('points').split(' ').length >= 6`)

	shot(t, ctx, "console.png")
	if total, failed := stopTraffic(); total == 0 || failed != 0 {
		t.Errorf("traffic while b3 died and zone b was disabled: %d of %d requests failed, want 0 of > 0", failed, total)
	}

	// Enable zone b again by a click: b2 takes traffic again (b3 is still down).
	do(t, ctx, "click enable on zone b", chromedp.Click(chromedp.CSS(`button.zone-toggle[data-service="web"][data-zone="b"][data-action="enable"]`)))
	waitJS(t, ctx, 10*time.Second, "zone b enabled on the page",
		`document.getElementById('message').textContent.includes('zone b of web enabled (applied)') && document.querySelector('tr.zone[data-zone="b"] td.state')?.textContent === 'enabled'`)
	wantServed(t, s.front, 30, "b1", "b2")

	// Unregister b3 by two clicks (the first arms the button): gone from the page and the API.
	unreg := chromedp.CSS(`button.unregister[data-service="web"][data-member="b3"]`)
	do(t, ctx, "arm unregister b3", chromedp.Click(unreg))
	waitJS(t, ctx, 2*time.Second, "the armed button", member("b3")+`?.querySelector('button.unregister.armed') != null`)
	do(t, ctx, "confirm unregister b3", chromedp.Click(unreg))
	waitJS(t, ctx, 10*time.Second, "b3 gone from the page", member("b3")+` === null && document.getElementById('message').textContent.includes('member b3 of web unregistered (applied)')`)
	code, out = s.admin("GET", "/v1/services/web", nil)
	if ms, _ := out["members"].([]any); code != 200 || len(ms) != 2 {
		t.Errorf("members after unregistering b3 from the page: %v, want b1 and b2", out["members"])
	}

	// A register-scoped key ("default", the 2010 password) sees the service and no buttons.
	do(t, ctx, "log out", chromedp.Click(chromedp.ID("logout")))
	waitJS(t, ctx, 5*time.Second, "the login form again", `!document.getElementById('login-view').hidden`)
	if ck := sessionCookies(t, ctx, base); len(ck) != 0 {
		t.Errorf("session cookie left after logout: %+v", ck)
	}
	login(t, ctx, "default", pw)
	waitJS(t, ctx, 5*time.Second, "the members for the register key", member("b1")+` !== null`)
	if n := evalJS[int](t, ctx, `document.querySelectorAll('#services button').length`); n != 0 {
		t.Errorf("a register-scoped key sees %d buttons, want 0", n)
	}
	if who := evalJS[string](t, ctx, `document.getElementById('who').textContent`); who != "default (register:*)" {
		t.Errorf("header says %q, want default (register:*)", who)
	}

	// The shared password changed (clbd watches the file): the open page's session ends at its
	// next poll and the page asks for a login again, saying why.
	writeFile(t, s.pwFile, "a new shared password\n", 0o600)
	waitJS(t, ctx, 10*time.Second, "the page to end the session", `!document.getElementById('login-view').hidden && document.getElementById('login-error').textContent.includes('removed or its secret changed')`)
	if ck := sessionCookies(t, ctx, base); len(ck) != 0 {
		t.Errorf("the ended session's cookie is still in the browser: %+v", ck)
	}
}

// shot saves a screenshot of the page in the test's temp dir and in $CLB_SCREENSHOT_DIR.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	c, cancel := timeLimit(ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot is %d bytes", len(png))
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("CLB_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("save screenshot: %v", err)
		}
		t.Logf("screenshot: %s", p)
	}
}

// pacedLoad sends a request to url every pause (at most for a minute) until stop, which
// reports how many were sent and how many failed; stop may be called more than once.
func pacedLoad(url string, pause time.Duration) (stop func() (total, failed int64)) {
	var total, failed int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(pause)
		defer tick.Stop()
		deadline := time.After(time.Minute)
		for {
			select {
			case <-done:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			total++
			resp, err := noKeepAlive.Get(url)
			if err != nil {
				failed++
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed++
			}
		}
	}()
	var once sync.Once
	return func() (int64, int64) {
		once.Do(func() { close(done); <-finished })
		return total, failed
	}
}

package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/internal/testutil"
)

// The integration tests run the real binaries (clbd, clb_register, clb_unregister), built once
// per test run, against a real haproxy and real HTTP backends on 127.0.0.x.

var bins struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// binary returns the path of a freshly built command of this module.
func binary(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "clb-bin-")
		if bins.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", bins.dir+"/", "clb/cmd/clbd", "clb/cmd/clb_register", "clb/cmd/clb_unregister")
		out, err := cmd.CombinedOutput()
		if err != nil {
			bins.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

func requireHaproxyBin(t testing.TB) { testutil.RequireHaproxy(t) }

func freePort(t testing.TB) int { return testutil.FreePort(t) }

func shortDir(t testing.TB) string { return testutil.ShortDir(t) }

// backend is a real HTTP server on addr that answers with its name; stop closes it.
func backend(t testing.TB, name, addr string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	stop = func() { srv.Close() }
	t.Cleanup(stop)
	return stop
}

// noKeepAlive opens a new connection per request, so that every request sees the current
// haproxy worker.
var noKeepAlive = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// apiClient calls clbd: a call waits for the apply, which takes a reload on the reload path,
// so it gets far more time than a proxied request.
var apiClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// spread sends n requests to url and counts the answers by body; failures count under "ERR".
func spread(t testing.TB, url string, n int) map[string]int {
	t.Helper()
	return testutil.Spread(noKeepAlive, url, n)
}

// wantServed checks that the n requests reached exactly the backends named, each at least once.
func wantServed(t testing.TB, url string, n int, names ...string) {
	t.Helper()
	got := spread(t, url, n)
	ok := len(got) == len(names)
	for _, name := range names {
		if got[name] == 0 {
			ok = false
		}
	}
	if !ok {
		t.Fatalf("%d requests to %s reached %v, want exactly %v", n, url, got, names)
	}
}

// clbd is a running clbd process.
type clbd struct {
	t       testing.TB
	args    []string
	dir     string
	api     string
	cmd     *exec.Cmd
	logs    *testutil.SyncBuffer
	exited  chan struct{}
	waitErr error
}

// startClbd runs clbd with args (plus --listen on a free port) and waits until it answers.
func startClbd(t testing.TB, dir string, args ...string) *clbd {
	t.Helper()
	port := freePort(t)
	c := &clbd{t: t, dir: dir, api: fmt.Sprintf("127.0.0.1:%d", port), logs: &testutil.SyncBuffer{},
		args: append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "debug"}, args...)}
	c.start()
	t.Cleanup(func() {
		c.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("clbd logs:\n%s", c.logs.String())
		}
	})
	return c
}

func (c *clbd) start() {
	c.t.Helper()
	c.cmd = exec.Command(binary(c.t, "clbd"), c.args...)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	c.exited = make(chan struct{})
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	c.waitHealthy()
}

// waitHealthy waits (bounded) until /healthz answers.
func (c *clbd) waitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			c.t.Fatalf("clbd exited: %v\n%s", c.waitErr, c.logs.String())
		default:
		}
		resp, err := noKeepAlive.Get("http://" + c.api + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("clbd did not answer on %s within 20s\n%s", c.api, c.logs.String())
}

// stop signals clbd and waits (bounded) for it to exit.
func (c *clbd) stop(sig syscall.Signal) {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
		c.t.Errorf("clbd did not exit within 20s of %v", sig)
	}
}

func (c *clbd) password() string {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "password"))
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// call sends a request signed with password (key "default") and decodes the JSON answer.
func (c *clbd) call(method, path, password string, body any) (int, map[string]any) {
	c.t.Helper()
	return c.callAs("default", method, path, password, body)
}

// callAs is call with a key id other than "default".
func (c *clbd) callAs(keyID, method, path, secret string, body any) (int, map[string]any) {
	c.t.Helper()
	req := c.signedAs(keyID, method, path, secret, body)
	resp, err := apiClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.t.Fatalf("%s %s: decode answer: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (c *clbd) signed(method, path, password string, body any) *http.Request {
	c.t.Helper()
	return c.signedAs("default", method, path, password, body)
}

func (c *clbd) signedAs(keyID, method, path, password string, body any) *http.Request {
	c.t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, "http://"+c.api+path, bytes.NewReader(data))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := auth.Sign(req, keyID, auth.DeriveKey([]byte(password)), data, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	return req
}

func (c *clbd) status() map[string]any {
	c.t.Helper()
	code, st := c.call("GET", "/v1/status", c.password(), nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET /v1/status = %d %v", code, st)
	}
	return st
}

// run runs one of the module's commands and returns its exit code and combined output.
func run(t testing.TB, name string, args ...string) (int, string) {
	t.Helper()
	return runWith(t, exec.CommandContext, name, args...)
}

// runWith is run with the command made by mk (e.g. inside a network namespace).
func runWith(t testing.TB, mk func(ctx context.Context, path string, args ...string) *exec.Cmd, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := mk(ctx, binary(t, name), args...)
	cmd.Env = append(os.Environ(), "CLB_PASSWORD=", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0, string(out)
}

// mustRun runs a command that must exit 0.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	code, out := run(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d: %s", name, strings.Join(args, " "), code, out)
	}
	return out
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(i int) string { return strconv.Itoa(i) }

// slotOf is the server (slot) of backend that holds member in the haproxy.cfg at path, as the
// built-in template writes it (`server sN ADDR ... # MEMBER`); "" when no slot holds it.
func slotOf(t testing.TB, path, backend, member string) string {
	t.Helper()
	in := false
	for _, line := range strings.Split(string(readFile(t, path)), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t"):
			in = len(f) > 1 && f[0] == "backend" && f[1] == backend
		case in && f[0] == "server" && len(f) > 3 && f[len(f)-2] == "#" && f[len(f)-1] == member:
			return f[1]
		}
	}
	return ""
}

// hasMember reports whether the haproxy.cfg at path routes to member at addr in any backend
// (a slot line of the built-in template: `server sN ADDR ... # MEMBER`, not disabled).
func hasMember(t testing.TB, path, member, addr string) bool {
	t.Helper()
	for _, line := range strings.Split(string(readFile(t, path)), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "server" && f[2] == addr && f[len(f)-2] == "#" && f[len(f)-1] == member {
			return true
		}
	}
	return false
}

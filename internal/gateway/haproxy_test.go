package gateway

import (
	"bufio"
	"clb/internal/haproxy"
	"clb/internal/testutil"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// lab is a real haproxy running the gateway scaffold, with every service backend answering
// "<backend> <path>?<query>" itself (http-request return), so no backend process is needed.
type lab struct {
	t      *testing.T
	dir    string
	mapDir string
	sock   string
	cfg    string
	port   int
	cmd    *exec.Cmd
	client *http.Client
}

// labConfig renders a whole haproxy.cfg: the scaffold for c plus one backend per target.
func labConfig(t testing.TB, c *Compiled, mapDir, sock string, backends []string) string {
	t.Helper()
	sc, err := RenderScaffold(mapDir, c)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    stats socket %s mode 600 level admin\n\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n", sock)
	b.WriteString(sc)
	b.WriteString("\n")
	for _, be := range backends {
		fmt.Fprintf(&b, "\nbackend %s\n    mode http\n    http-request return status 200 content-type text/plain lf-string \"%s %%[path]?%%[query]\"\n", be, be)
	}
	return b.String()
}

func writeMaps(t testing.TB, c *Compiled, mapDir string) {
	t.Helper()
	for _, n := range c.MapNames() {
		if err := os.WriteFile(filepath.Join(mapDir, n), c.MapFile(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func haproxyBin(t testing.TB) string {
	t.Helper()
	testutil.RequireHaproxy(t)
	bin, _ := exec.LookPath("haproxy")
	return bin
}

// checkConfig runs haproxy -c on a config whose maps are written.
func checkConfig(t testing.TB, cfg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := haproxy.Check(ctx, haproxyBin(t), cfg); err != nil {
		t.Fatalf("haproxy -c: %v", err)
	}
}

// startLab compiles gateways (whose binds it sets to one free loopback port each, in name
// order; one gateway is the usual case), writes the maps and starts haproxy.
func startLab(t *testing.T, gws map[string]Gateway, targets ServiceTargets) *lab {
	t.Helper()
	bin := haproxyBin(t)
	dir := testutil.ShortDir(t)
	l := &lab{t: t, dir: dir, mapDir: filepath.Join(dir, "maps"), sock: filepath.Join(dir, "admin.sock"), cfg: filepath.Join(dir, "haproxy.cfg")}
	if err := os.Mkdir(l.mapDir, 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(gws))
	for n := range gws {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := gws[n]
		l.port = testutil.FreePort(t)
		g.Bind = fmt.Sprintf("127.0.0.1:%d", l.port)
		gws[n] = g
	}
	c, err := Compile(gws, targets)
	if err != nil {
		t.Fatal(err)
	}
	writeMaps(t, c, l.mapDir)
	if err := os.WriteFile(l.cfg, []byte(labConfig(t, c, l.mapDir, l.sock, targetBackends(targets))), 0o644); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, l.cfg)
	l.cmd = exec.Command(bin, "-db", "-f", l.cfg)
	out := &testutil.SyncBuffer{}
	l.cmd.Stdout, l.cmd.Stderr = out, out
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { l.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		l.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", l.port))
		if err == nil {
			c.Close()
			if _, err := os.Stat(l.sock); err == nil {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen on %d: %s", l.port, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.client = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return l
}

func targetBackends(ts ServiceTargets) []string {
	var out []string
	for s, ports := range ts {
		for _, p := range ports {
			be, _ := ts.Backend(s, p)
			out = append(out, be)
		}
	}
	sort.Strings(out)
	return out
}

// answer is what haproxy did with a request, in the model's terms.
type answer struct {
	Backend  string
	Status   int
	Path     string
	Redirect bool
}

// do sends req (with query "q=1", which rewrites must keep) through haproxy over a raw
// connection, so that the Host header, method, path and headers are exactly the test's.
func (l *lab) do(req Request) (answer, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.port), 2*time.Second)
	if err != nil {
		return answer{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s?q=1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", req.Method, req.Path, req.Host)
	if req.UserAgent != "" {
		fmt.Fprintf(&b, "User-Agent: %s\r\n", req.UserAgent)
	}
	hs := make([]string, 0, len(req.Headers))
	for h := range req.Headers {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	for _, h := range hs {
		fmt.Fprintf(&b, "%s: %s\r\n", h, req.Headers[h])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return answer{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: req.Method})
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusMovedPermanently {
		return answer{Redirect: true, Path: req.Path}, nil
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), " ") || strings.HasPrefix(string(body), "200 ") {
		return answer{Backend: StatusBackend(resp.StatusCode), Status: resp.StatusCode, Path: req.Path}, nil
	}
	be, rest, _ := strings.Cut(strings.TrimSpace(string(body)), " ")
	path, q, _ := strings.Cut(rest, "?")
	if q != "q=1" {
		return answer{}, fmt.Errorf("%s %s: the query became %q", req.Method, req.Path, q)
	}
	return answer{Backend: be, Path: path}, nil
}

func (d Decision) answer() answer {
	return answer{Backend: d.Backend, Status: d.Status, Path: d.Path, Redirect: d.Redirect}
}

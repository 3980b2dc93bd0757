package agent

import (
	"clb/agent/config"
	"clb/agent/reconcile"
	"clb/internal/haproxy"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// failingRuntime wraps the real runtime client and fails `add server` and `set server addr` (in a batch) while fail is set: the
// failure injection at an interface clbd owns.
type failingRuntime struct {
	haproxy.RuntimeClient
	fail *atomic.Bool
}

func (f failingRuntime) AddServer(backend, name, attrs string) error {
	if f.fail.Load() {
		return errors.New("injected failure")
	}
	return f.RuntimeClient.AddServer(backend, name, attrs)
}

// ExecuteRaw fails the commands that point a server slot at a member (`set server ... addr`),
// which the reconciler sends in one batch.
func (f failingRuntime) ExecuteRaw(cmd string) ([]string, error) {
	if f.fail.Load() && strings.Contains(cmd, " addr ") {
		return nil, errors.New("injected failure")
	}
	return f.RuntimeClient.ExecuteRaw(cmd)
}

// TestRuntimeFailureFallsBackToReload: a runtime command that fails is made up for by a
// reload; the member is served either way and /v1/status says what happened.
func TestRuntimeFailureFallsBackToReload(t *testing.T) {
	requireHaproxy(t)
	dir, err := os.MkdirTemp("", "clbfb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pwPath := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwPath, []byte(testPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	front, member := freeTCPPort(t), freeTCPPort(t)
	cfg := config.Defaults()
	yml := fmt.Sprintf("services:\n  web:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        member_port: %d\n", front, member)
	if err := config.Decode(&cfg, []byte(yml), "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.StateDir, cfg.Templates, cfg.PasswordFile, cfg.Managed = "127.0.0.1:0", dir, filepath.Join(dir, "templates"), pwPath, true
	cfg.Output = config.OutputPath(&cfg, false)
	var fail atomic.Bool
	a, addr := startAgent(t, &cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		wrapRuntime: func(dial reconcile.Dialer) reconcile.Dialer {
			return func(ctx context.Context) (haproxy.RuntimeClient, error) {
				rt, err := dial(ctx)
				if err != nil {
					return nil, err
				}
				return failingRuntime{rt, &fail}, nil
			}
		}})
	base := "http://" + addr.String()
	// Two members on 127.0.0.1, each answering with its port.
	ports := []int{member, freeTCPPort(t)}
	for _, port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, port) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	register := func(name string, port int) {
		t.Helper()
		st, out := doCase(t, base, apiCase{method: "PUT", path: "/v1/services/web/members/" + name, body: fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, port), sign: true})
		if st != http.StatusOK {
			t.Fatalf("register %s = %d %v", name, st, out)
		}
	}
	// servedBy reports whether a few requests reach the member on port.
	servedBy := func(port int) bool {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		seen := false
		for range 4 {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", front))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen = seen || string(b) == fmt.Sprint(port)
		}
		return seen
	}
	register("m1", ports[0])
	if st := a.status(); st.Reloads != 0 || st.RuntimeFallbacks != 0 {
		t.Errorf("after the first registration: %d reloads, %d fallbacks; want 0, 0 (runtime API)", st.Reloads, st.RuntimeFallbacks)
	}
	fail.Store(true)
	register("m2", ports[1])
	if st := a.status(); st.Reloads != 1 || st.RuntimeFallbacks != 1 || !strings.Contains(st.LastRuntimeError, "injected failure") {
		t.Errorf("after a failed runtime command: %d reloads, %d fallbacks, last error %q; want 1, 1, naming the failure",
			st.Reloads, st.RuntimeFallbacks, st.LastRuntimeError)
	}
	if !servedBy(ports[1]) {
		t.Errorf("member m2, applied by the fallback reload, is not served")
	}
}

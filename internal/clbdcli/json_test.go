package clbdcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"clb/internal/auth"
)

// fixtureServer serves a fixture's answers on 127.0.0.1 as clbd's API would, behind the real
// signature check (auth.Verifier) with the password "pw"; it records the calls it verified.
type fixtureServer struct {
	status, services []byte
	mu               sync.Mutex
	calls            []string
}

func startFixtureServer(t *testing.T, path string) (*fixtureServer, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	fs := &fixtureServer{status: f["status"], services: f["services"]}
	v := auth.New(auth.StaticKeys{auth.DefaultKeyID: auth.DeriveKey([]byte("pw"))})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := v.Verify(r, body); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":%q,"code":"unauthenticated"}`, err.Error())
			return
		}
		fs.mu.Lock()
		fs.calls = append(fs.calls, r.Method+" "+r.URL.Path)
		fs.mu.Unlock()
		switch r.URL.Path {
		case "/v1/status":
			w.Write(fs.status)
		case "/v1/services":
			fmt.Fprintf(w, `{"services":%s}`, fs.services)
		default:
			var views []json.RawMessage
			json.Unmarshal(fs.services, &views)
			for _, sv := range views {
				var v struct{ Name string }
				json.Unmarshal(sv, &v)
				if r.URL.Path == "/v1/services/"+v.Name {
					w.Write(sv)
					return
				}
			}
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"unknown service","code":"not_found"}`)
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fs, ln.Addr().String()
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// TestJSONOutputIsTheAPIs: --json prints exactly what the API answered (parsed back and
// compared value for value with the fixture), over signed requests the real verifier accepts;
// a wrong password is refused with 401 and exit 77, the error JSON on stdout.
func TestJSONOutputIsTheAPIs(t *testing.T) {
	fs, addr := startFixtureServer(t, "testdata/status/degraded.json")
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	cfg := filepath.Join(dir, "clbd.yaml")
	os.WriteFile(cfg, []byte("listen: "+addr+"\npassword_file: "+pw+"\n"), 0o644)

	code, out, errOut := runMain("status", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 {
		t.Fatalf("status --json = %v, %s; want {status, services}", err, out)
	}
	if !sameJSON(t, got["status"], fs.status) || !sameJSON(t, got["services"], fs.services) {
		t.Errorf("status --json differs from the API's answers:\n%s", out)
	}

	code, out, errOut = runMain("members", "--config", cfg, "--json", "web")
	var views []json.RawMessage
	json.Unmarshal(fs.services, &views)
	if code != 0 || !sameJSON(t, []byte(out), views[0]) {
		t.Errorf("members --json web: exit %d (%s), output differs from GET /v1/services/web:\n%s", code, errOut, out)
	}

	code, out, _ = runMain("status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "web-b2  10.0.2.12:8080  b (disabled)  0       maint") {
		t.Errorf("status table from the API: exit %d\n%s", code, out)
	}
	if want := []string{"GET /v1/status", "GET /v1/services", "GET /v1/services/web", "GET /v1/status", "GET /v1/services"}; !reflect.DeepEqual(fs.calls, want) {
		t.Errorf("calls %v, want %v", fs.calls, want)
	}

	os.WriteFile(pw, []byte("wrong\n"), 0o600)
	code, out, errOut = runMain("status", "--config", cfg, "--json")
	if code != ExitNoPerm || !strings.Contains(out, `"code": "unauthenticated"`) || !strings.Contains(errOut, "HTTP 401") || !strings.Contains(errOut, "does not accept the key \"default\"") {
		t.Errorf("wrong password: exit %d\nstdout: %s\nstderr: %s\nwant 77, the error JSON on stdout and the hint", code, out, errOut)
	}
	if !bytes.Contains([]byte(errOut), []byte("is this the config clbd runs with")) {
		t.Errorf("401 message lacks the config hint: %s", errOut)
	}
}

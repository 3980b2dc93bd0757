package haproxy

import (
	"clb/internal/testutil"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRenderRedirectMap(t *testing.T) {
	got := string(RenderRedirectMap(map[string]int{"b.example": 8443, "a.example": 443}))
	want := "a.example https://a.example\nb.example https://b.example:8443\n"
	if got != want {
		t.Errorf("RenderRedirectMap:\n%s\nwant\n%s", got, want)
	}
}

// TestForwardedAndRedirect runs the scaffold lines in a real haproxy: an http and an https
// frontend in front of a backend that echoes the X-Forwarded-* headers it gets. Listed
// domains are redirected from http to https (path and query kept, port of the https
// gateway); others, and https requests, reach the backend with the headers ELB sets.
func TestForwardedAndRedirect(t *testing.T) {
	t.Parallel()
	bin := needHaproxy(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]string{
			"for": r.Header.Values("X-Forwarded-For"), "proto": r.Header.Values("X-Forwarded-Proto"), "port": r.Header.Values("X-Forwarded-Port"),
		})
	}))
	t.Cleanup(echo.Close)
	base := shortTempDir(t)
	dir := CertDir(filepath.Join(base, "certs"))
	a := mkCert(t, certSpec{cn: "a", names: []string{"a.example"}})
	if _, err := WriteCertDir(dir, map[string][]byte{"a.example": a.bundle()}); err != nil {
		t.Fatal(err)
	}
	httpPort, httpsPort := freePort(t), freePort(t)
	redirects := filepath.Join(base, "redirect.map")
	if err := os.WriteFile(redirects, RenderRedirectMap(map[string]int{"a.example": httpsPort}), 0o644); err != nil {
		t.Fatal(err)
	}
	indent := func(l []string) string { return "    " + strings.Join(l, "\n    ") + "\n" }
	cfg := fmt.Sprintf(`defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend plain
    bind 127.0.0.1:%d
%s%s    default_backend echo
frontend secure
    bind 127.0.0.1:%d ssl crt-list %s
%s%s    default_backend echo
backend echo
    server e %s
`, httpPort, indent(RedirectHTTPSLines(redirects)), indent(ForwardedHeaders()),
		httpsPort, dir.CrtList(), indent(RedirectHTTPSLines(redirects)), indent(ForwardedHeaders()), echo.Listener.Addr())
	cfgPath := filepath.Join(base, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", cfgPath)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	client := &http.Client{
		Timeout:       2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
	}
	do := func(url, host string, hdr map[string][]string) (*http.Response, map[string][]string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		for k, vs := range hdr {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		var got map[string][]string
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				return nil, nil, err
			}
		}
		return resp, got, nil
	}
	plain := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	secure := fmt.Sprintf("https://127.0.0.1:%d", httpsPort)
	eventually(t, 5*time.Second, "haproxy answers", func() error {
		_, _, err := do(plain+"/", "b.example", nil)
		if err != nil {
			return fmt.Errorf("%v (%s)", err, out.String())
		}
		return nil
	})

	// Redirected: the domain in the map, whatever port and case its Host has.
	for _, host := range []string{"a.example", "A.Example:" + fmt.Sprint(httpPort)} {
		resp, _, err := do(plain+"/p/q?x=1&y=2", host, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("https://a.example:%d/p/q?x=1&y=2", httpsPort)
		if resp.StatusCode != 301 || resp.Header.Get("Location") != want {
			t.Errorf("http %s: %d Location %q, want 301 %q", host, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	port := func(p int) []string { return []string{fmt.Sprint(p)} }
	for _, tc := range []struct {
		name, url, host string
		hdr             map[string][]string
		want            map[string][]string
	}{
		{"http, no header", plain + "/", "b.example", nil,
			map[string][]string{"for": {"127.0.0.1"}, "proto": {"http"}, "port": port(httpPort)}},
		{"http, one X-Forwarded-For: appended", plain + "/", "b.example", map[string][]string{"X-Forwarded-For": {"10.1.2.3, 10.4.5.6"}},
			map[string][]string{"for": {"10.1.2.3, 10.4.5.6, 127.0.0.1"}, "proto": {"http"}, "port": port(httpPort)}},
		{"http, two X-Forwarded-For lines: one more", plain + "/", "b.example", map[string][]string{"X-Forwarded-For": {"10.1.2.3", "10.4.5.6"}},
			map[string][]string{"for": {"10.1.2.3", "10.4.5.6", "127.0.0.1"}, "proto": {"http"}, "port": port(httpPort)}},
		{"http, forged proto and port: replaced", plain + "/", "b.example", map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Port": {"443"}},
			map[string][]string{"for": {"127.0.0.1"}, "proto": {"http"}, "port": port(httpPort)}},
		{"https, redirected domain: served", secure + "/", "a.example", nil,
			map[string][]string{"for": {"127.0.0.1"}, "proto": {"https"}, "port": port(httpsPort)}},
	} {
		resp, got, err := do(tc.url, tc.host, tc.hdr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode != 200 || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %d %v, want 200 %v", tc.name, resp.StatusCode, got, tc.want)
		}
	}
}

package haproxy

import (
	"clb/internal/testutil"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// mapLab is a real haproxy whose frontend answers "<value>" for the request path looked up
// in a map_str map (m.map) and, under /re/, in a map_reg map (r.map).
type mapLab struct {
	sock, strMap, regMap string
	port                 int
	client               *http.Client
}

func startMapLab(t *testing.T, strEntries, regEntries []MapEntry) *mapLab {
	t.Helper()
	bin := needHaproxy(t)
	dir := testutil.ShortDir(t)
	l := &mapLab{sock: filepath.Join(dir, "admin.sock"), strMap: filepath.Join(dir, "m.map"), regMap: filepath.Join(dir, "r.map"), port: freePort(t)}
	for p, e := range map[string][]MapEntry{l.strMap: strEntries, l.regMap: regEntries} {
		if err := os.WriteFile(p, FormatMap(e), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:%d
    http-request return status 200 content-type text/plain lf-string "%%[path,map_reg(%s,none)]" if { path_beg /re/ }
    http-request return status 200 content-type text/plain lf-string "%%[path,map(%s,none)]"
`, l.sock, l.port, l.regMap, l.strMap)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	eventually(t, 5*time.Second, "haproxy listens", func() error {
		select {
		case <-done:
			return fmt.Errorf("haproxy exited: %s", out.String())
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", l.port))
		if err != nil {
			return err
		}
		c.Close()
		_, err = os.Stat(l.sock)
		return err
	})
	l.client = &http.Client{Timeout: 5 * time.Second}
	return l
}

func (l *mapLab) get(t *testing.T, client *http.Client, path string) string {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", l.port, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (l *mapLab) pid(t *testing.T) string {
	t.Helper()
	out, err := AdminCommand(context.Background(), l.sock, "show info")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Pid: (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("show info has no Pid: %q", out)
	}
	return m[1]
}

func numbered(n int, key, value string) []MapEntry {
	out := make([]MapEntry, n)
	for i := range out {
		out[i] = MapEntry{Key: fmt.Sprintf(key, i), Value: fmt.Sprintf(value, i)}
	}
	return out
}

func TestApplyMapPastThePayloadLimit(t *testing.T) {
	l := startMapLab(t, []MapEntry{{Key: "/old", Value: "old"}}, []MapEntry{{Key: "^/re/", Value: "re"}})
	pid := l.pid(t)
	keepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	if got := l.get(t, keepAlive, "/old"); got != "old" {
		t.Fatalf("before: /old answers %q", got)
	}
	entries := numbered(2000, "/key/%04d", "value-%04d-with-some-padding")
	if n := len(FormatMap(entries)); n <= 16<<10 {
		t.Fatalf("the test map is %d bytes: not past haproxy's 16 KiB payload limit", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ApplyMap(ctx, l.sock, l.strMap, entries); err != nil {
		t.Fatal(err)
	}
	// The very next request, on the connection kept alive from before, sees the new map.
	if got := l.get(t, keepAlive, "/key/1999"); got != "value-1999-with-some-padding" {
		t.Errorf("after: /key/1999 answers %q", got)
	}
	if got := l.get(t, l.client, "/key/0000"); got != "value-0000-with-some-padding" {
		t.Errorf("after: /key/0000 answers %q", got)
	}
	if got := l.get(t, l.client, "/old"); got != "none" {
		t.Errorf("after: /old answers %q, want none (replaced, not merged)", got)
	}
	if err := CheckMap(ctx, l.sock, l.strMap, entries); err != nil {
		t.Errorf("CheckMap after ApplyMap: %v", err)
	}
	if got := l.pid(t); got != pid {
		t.Errorf("haproxy pid %s became %s: a map apply must not restart or reload", pid, got)
	}
	// Applying fewer entries shrinks the map (the new version is whole).
	if err := ApplyMap(ctx, l.sock, l.strMap, entries[:3]); err != nil {
		t.Fatal(err)
	}
	if err := CheckMap(ctx, l.sock, l.strMap, entries[:3]); err != nil {
		t.Error(err)
	}
	if err := CheckMap(ctx, l.sock, l.strMap, entries[:4]); err == nil {
		t.Error("CheckMap accepts a map that lacks an entry")
	}
	if err := CheckMap(ctx, l.sock, l.strMap, []MapEntry{entries[0], entries[2], entries[1]}); err == nil {
		t.Error("CheckMap accepts entries in another order")
	}
}

func TestApplyMapRefusedEntryKeepsTheOldMap(t *testing.T) {
	old := []MapEntry{{Key: "^/re/a", Value: "old-a"}, {Key: "^/re/", Value: "old-any"}}
	l := startMapLab(t, nil, old)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 1,500 good entries (past one payload chunk), then one PCRE2 refuses.
	bad := append(numbered(1500, "^/re/n%04d$", "new-%04d"), MapEntry{Key: "^/re/(bad", Value: "x"}, MapEntry{Key: "^/re/", Value: "new-any"})
	err := ApplyMap(ctx, l.sock, l.regMap, bad)
	if !errors.Is(err, ErrMapApply) || !strings.Contains(err.Error(), "(bad") {
		t.Fatalf("ApplyMap with a bad regex: %v, want an ErrMapApply naming it", err)
	}
	if got := l.get(t, l.client, "/re/a"); got != "old-a" {
		t.Errorf("after the refused apply /re/a answers %q, want old-a", got)
	}
	if got := l.get(t, l.client, "/re/n0001"); got != "old-any" {
		t.Errorf("after the refused apply /re/n0001 answers %q, want old-any (nothing of the aborted version)", got)
	}
	if err := CheckMap(ctx, l.sock, l.regMap, old); err != nil {
		t.Errorf("the old map changed: %v", err)
	}
	// The next apply works: an aborted version leaves nothing behind.
	good := bad[:1500]
	if err := ApplyMap(ctx, l.sock, l.regMap, good); err != nil {
		t.Fatal(err)
	}
	if got := l.get(t, l.client, "/re/n1499"); got != "new-1499" {
		t.Errorf("/re/n1499 answers %q", got)
	}
}

func TestApplyMapRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []MapEntry
		want    string
	}{
		{"space in key", []MapEntry{{Key: "a b", Value: "v"}}, "without white space"},
		{"newline in value", []MapEntry{{Key: "a", Value: "v\nadd map x y"}}, "one line"},
		{"comment key", []MapEntry{{Key: "#a", Value: "v"}}, "not starting with #"},
		{"huge", []MapEntry{{Key: strings.Repeat("k", MapChunkBytes), Value: "v"}}, "bytes: at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No haproxy: the entries are refused before the socket is used.
			err := ApplyMap(context.Background(), "/nonexistent/admin.sock", "/m.map", tc.entries)
			if !errors.Is(err, ErrMapApply) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an ErrMapApply with %q", err, tc.want)
			}
		})
	}
}

func TestApplyMapUnknownMap(t *testing.T) {
	l := startMapLab(t, nil, nil)
	err := ApplyMap(context.Background(), l.sock, "/not/loaded.map", []MapEntry{{Key: "a", Value: "b"}})
	if !errors.Is(err, ErrMapApply) || !strings.Contains(err.Error(), "prepare map") {
		t.Errorf("got %v", err)
	}
}

func TestParseMapRoundTrip(t *testing.T) {
	in := []MapEntry{{Key: `(?m)\Aa\.example\n[^\n]*\n`, Value: `be_1|/\1`}, {Key: "host@/a", Value: "gw.status.404"}, {Key: "k", Value: "v with spaces"}}
	got := ParseMap(append([]byte("# comment\n\n"), FormatMap(in)...))
	if fmt.Sprint(got) != fmt.Sprint(in) {
		t.Errorf("got %v, want %v", got, in)
	}
}

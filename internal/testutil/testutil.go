// Package testutil holds the small helpers the tests of several packages share: free ports,
// short temp dirs for unix sockets, a log buffer safe for concurrent writers, test
// certificates, a lab of network namespaces for tests of several hosts, and the rules for
// tests that need a real haproxy or root.
package testutil

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ShortDir is a temp dir with a short path, removed after the test: haproxy's unix sockets
// must fit in 108 bytes, which t.TempDir() paths can exceed.
func ShortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "clb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// RequireHaproxy skips a test without haproxy on the PATH, except in CI ($CI set), where
// .ci/run installs it and a missing haproxy is a failure.
func RequireHaproxy(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy is not installed; .ci/run installs it")
		}
		t.Skip("haproxy is not installed")
	}
}

// SyncBuffer is a bytes.Buffer for concurrent writers (a process's stdout and stderr, a logger).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Spread sends n GET requests to url with client and counts the answers by body; errors count
// under "ERR" and answers other than 200 under "HTTP <status>".
func Spread(client *http.Client, url string, n int) map[string]int {
	got := map[string]int{}
	for range n {
		resp, err := client.Get(url)
		if err != nil {
			got["ERR"]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			got[fmt.Sprintf("HTTP %d", resp.StatusCode)]++
			continue
		}
		got[string(b)]++
	}
	return got
}

// Package etcdtest starts real etcd servers (Debian's etcd-server package) for tests: one or
// more members on 127.0.0.1 ports, data in the test's temp dir, stopped when the test ends.
package etcdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"clb/internal/testutil"
)

// Require returns the etcd binary, or skips the test when it is not installed, except in CI
// ($CI set), where a missing etcd fails the test: `make deps` installs it.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("etcd is not installed; `make deps` installs Debian's etcd-server")
		}
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	return p
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one etcd server of a Cluster.
type Member struct {
	t         testing.TB
	bin       string
	Name      string
	ClientURL string
	args      []string
	logs      *testutil.SyncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs an n-member cluster and waits until it answers writes.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Require(t)
	c := &Cluster{t: t}
	var initial []string
	token := fmt.Sprintf("clb-test-%d", time.Now().UnixNano())
	for i := range n {
		m := &Member{t: t, bin: bin, Name: fmt.Sprintf("m%d", i), logs: &testutil.SyncBuffer{}}
		m.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t))
		peer := fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t))
		m.args = []string{"--name", m.Name, "--data-dir", t.TempDir(),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster-token", token,
			"--initial-cluster-state", "new", "--log-level", "warn", "--logger", "zap"}
		initial = append(initial, m.Name+"="+peer)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = append(m.args, "--initial-cluster", strings.Join(initial, ","))
		m.Start()
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Stop()
		}
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcd %s logs (tail):\n%s", m.Name, tail(m.logs.String(), 1500))
			}
		}
	})
	c.WaitHealthy(30 * time.Second)
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client is a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitHealthy waits (bounded) until the cluster commits a write.
func (c *Cluster) WaitHealthy(limit time.Duration) {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/etcdtest/health", time.Now().String())
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, m := range c.Members {
				logs = append(logs, m.Name+":\n"+tail(m.logs.String(), 2000))
			}
			c.t.Fatalf("etcd cluster not healthy within %s: %v\n%s", limit, err, strings.Join(logs, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops every member.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Go(m.Stop)
	}
	wg.Wait()
}

// Restart starts every stopped member again (same data) and waits until the cluster is healthy.
func (c *Cluster) Restart() {
	for _, m := range c.Members {
		if !m.Running() {
			m.Start()
		}
	}
	c.WaitHealthy(30 * time.Second)
}

// Start starts the member (again, on the same data dir and ports).
func (m *Member) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	args := m.args
	if m.cmd != nil {
		// A restart: the data dir holds the cluster; the initial-* flags are ignored by etcd.
		args = slicesWithout(args, "--initial-cluster-state")
		args = append(args, "--initial-cluster-state", "existing")
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	exited := m.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
}

func slicesWithout(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Stop stops the member (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
func (m *Member) Stop() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

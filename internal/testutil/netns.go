//go:build linux

package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Lab is a small network of test hosts: one network namespace per host, all on one bridge
// that lives in a namespace of its own, so nothing is added to the machine's own network.
// Addresses come from 198.18.0.0/24 (RFC 2544's benchmarking range): they exist only inside
// the lab. Needs root and iproute2; see RequireNetns.
type Lab struct {
	t      testing.TB
	prefix string
	hosts  []string
}

// labs numbers the labs of this process, so that tests in parallel get namespaces of their own.
var labs atomic.Int64

// LabNet is the lab's network; host i (from 1) has LabNet.(i).
const LabNet = "198.18.0."

// RequireNetns skips a test that needs network namespaces where it cannot have them (not root,
// no iproute2, or a tool of cmds missing), except in CI ($CI set), where .ci/run runs as root
// and installs them, and a missing piece is a failure.
func RequireNetns(t testing.TB, cmds ...string) {
	t.Helper()
	miss := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s; .ci/run runs as root and installs what this test needs", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		miss("network namespaces need root")
	}
	for _, c := range append([]string{"ip"}, cmds...) {
		if _, err := exec.LookPath(c); err != nil {
			miss(c + " is not installed")
		}
	}
}

// NewLab creates the namespaces for hosts (named in order: the first gets LabNet.1) and
// removes them, with every process still running in them, when the test ends.
func NewLab(t testing.TB, hosts ...string) *Lab {
	t.Helper()
	l := &Lab{t: t, prefix: fmt.Sprintf("clb%d-%d", os.Getpid(), labs.Add(1)), hosts: hosts}
	bridge := l.prefix + "-br"
	nss := []string{bridge}
	for _, h := range hosts {
		nss = append(nss, l.NS(h))
	}
	removeNetns(nss) // left by an earlier run that had this pid and was killed
	t.Cleanup(func() { removeNetns(nss) })
	l.ip("netns", "add", bridge)
	l.ip("-n", bridge, "link", "add", "br0", "type", "bridge")
	l.ip("-n", bridge, "link", "set", "br0", "up")
	for i, h := range hosts {
		ns := l.NS(h)
		l.ip("netns", "add", ns)
		port := fmt.Sprintf("p%d", i+1)
		l.ip("-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		l.ip("-n", bridge, "link", "set", port, "master", "br0", "up")
		l.ip("-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", LabNet, i+1), "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// NS is the namespace name of host h.
func (l *Lab) NS(h string) string { return l.prefix + "-" + h }

// Addr is host h's address in the lab.
func (l *Lab) Addr(h string) string {
	for i, x := range l.hosts {
		if x == h {
			return fmt.Sprintf("%s%d", LabNet, i+1)
		}
	}
	l.t.Fatalf("no host %q in the lab", h)
	return ""
}

// Command is name with args run inside host h's namespace (ip netns exec replaces itself
// with the command, so the process is the command's).
func (l *Lab) Command(h, name string, args ...string) *exec.Cmd {
	return l.CommandContext(context.Background(), h, name, args...)
}

// CommandContext is Command, killed when ctx ends.
func (l *Lab) CommandContext(ctx context.Context, h, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.NS(h), name}, args...)...)
}

// Dial opens a connection from inside host h's namespace (for an http.Transport's
// DialContext). The socket is made on a thread that joined the namespace; the thread is
// never returned to Go's pool (the goroutine ends locked), so nothing else runs there.
func (l *Lab) Dial(h string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := l.inNS(h, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen opens a listener inside host h's namespace.
func (l *Lab) Listen(h, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.inNS(h, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// inNS runs f on a fresh OS thread that joined host h's network namespace.
func (l *Lab) inNS(h string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		fd, err := unix.Open("/run/netns/"+l.NS(h), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open namespace %s: %w", l.NS(h), err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("join namespace %s: %w", l.NS(h), err)
			return
		}
		done <- f()
	}()
	return <-done
}

func (l *Lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// removeNetns kills what still runs in the namespaces and deletes them.
func removeNetns(nss []string) {
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, pid := range strings.Fields(string(out)) {
			// The test itself shows up when Go parked its main thread after a goroutine that
			// joined the namespace ended on it.
			if pid != strconv.Itoa(os.Getpid()) {
				exec.Command("kill", "-KILL", pid).Run()
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // let the killed processes go before their namespaces
	for _, ns := range nss {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

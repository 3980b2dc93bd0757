package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fixture is one managed haproxy in front of two real HTTP backends.
type fixture struct {
	t    testing.TB
	bin  string
	dir  string
	cfg  string
	port int
	a, b string // backend addresses answering "A" and "B"
	mu   sync.Mutex
	pids []int // every master seen, killed at cleanup if still alive
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{t: t, bin: needHaproxy(t)}
	f.dir = shortTempDir(t)
	f.cfg = filepath.Join(f.dir, "haproxy.cfg")
	f.port = freePort(t)
	f.a = backend(t, "A")
	f.b = backend(t, "B")
	f.write(f.a, "")
	// Registered before any Run cleanup, so it runs after them: never
	// leave a haproxy behind, whatever the test did.
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, pid := range f.pids {
			if isLiveHaproxy(pid) {
				t.Errorf("haproxy %d still running at cleanup: killing it", pid)
				syscall.Kill(-pid, syscall.SIGKILL)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return f
}

func (f *fixture) write(server, extra string) { writeConfig(f.t, f.cfg, f.port, server, extra) }

func (f *fixture) track(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pid != 0 && !slices.Contains(f.pids, pid) {
		f.pids = append(f.pids, pid)
	}
}

func (f *fixture) managed() *Managed {
	return New(Options{
		Binary:      f.bin,
		ConfigPath:  f.cfg,
		Dir:         f.dir,
		StopTimeout: 2 * time.Second,
		Logger:      testLogger(f.t),
	})
}

// run starts m.Run and waits until haproxy is ready. The returned stop
// cancels Run and returns its result; cleanup calls it too.
func (f *fixture) run(m *Managed) (stop func() error) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	var once sync.Once
	var runErr error
	called := false // by the test, which then checks the result itself
	stop = func() error {
		called = true
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(20 * time.Second):
				runErr = errors.New("Run did not return within 20s of cancel")
			}
		})
		return runErr
	}
	f.t.Cleanup(func() {
		if called {
			return
		}
		if err := stop(); err != nil {
			f.t.Errorf("Run: %v", err)
		}
	})
	f.waitReady(m)
	return stop
}

func (f *fixture) waitReady(m *Managed) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.track(m.Pid())
}

func (f *fixture) showProc(m *Managed) procState {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := showProc(ctx, m.MasterSocket())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func reload(t testing.TB, m *Managed) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Reload(ctx)
}

func TestManagedServesAndReloads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	f.run(m)
	wantBody(t, f.port, "A")

	// A changed backend takes effect once Reload confirms it.
	f.write(f.b, "")
	if err := reload(t, m); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	wantBody(t, f.port, "B")
	if st := f.showProc(m); st.master.Reloads != 1 || st.master.Failed != 0 {
		t.Errorf("after reload: master %+v, want 1 reload, 0 failed", st.master)
	}

	// A config broken on disk: the reload fails, the old worker serves on.
	f.write(f.a, "    no-such-keyword here\n")
	workerBefore := f.showProc(m).workers
	err := reload(t, m)
	if !errors.Is(err, ErrReloadFailed) {
		t.Fatalf("Reload(broken) = %v, want ErrReloadFailed", err)
	}
	if !strings.Contains(err.Error(), "unknown keyword 'no-such-keyword'") {
		t.Errorf("Reload(broken) = %q, want haproxy's message in it", err)
	}
	t.Logf("broken reload: %v", err)
	wantBody(t, f.port, "B")
	if st := f.showProc(m); st.master.Failed != 1 || len(st.workers) != 1 || st.workers[0].PID != workerBefore[0].PID {
		t.Errorf("after failed reload: %+v, want failed 1 and worker %d still current", st, workerBefore[0].PID)
	}

	// Fixed again: reloads work again.
	f.write(f.a, "")
	if err := reload(t, m); err != nil {
		t.Fatalf("Reload after fix: %v", err)
	}
	wantBody(t, f.port, "A")
}

func TestManagedRestartsKilledMaster(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	f.run(m)
	wantBody(t, f.port, "A")

	old := m.Pid()
	oldWorkers := f.showProc(m).workers
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "new master", func() error {
		if pid := m.Pid(); pid == 0 || pid == old {
			return errors.New("not restarted yet")
		}
		return nil
	})
	f.waitReady(m)
	wantBody(t, f.port, "A")
	if !processGone(old) {
		t.Errorf("killed master %d not reaped", old)
	}
	for _, w := range oldWorkers {
		eventually(t, 2*time.Second, "worker of the killed master gone", func() error {
			if isLiveHaproxy(w.PID) {
				return fmt.Errorf("worker %d still running", w.PID)
			}
			return nil
		})
	}
	// The restarted master is reloadable like the first one.
	f.write(f.b, "")
	if err := reload(t, m); err != nil {
		t.Fatalf("Reload after restart: %v", err)
	}
	wantBody(t, f.port, "B")
}

func TestManagedStopLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	stop := f.run(m)
	wantBody(t, f.port, "A")

	pid := m.Pid()
	pids := []int{pid}
	for _, w := range f.showProc(m).workers {
		pids = append(pids, w.PID)
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	t.Logf("graceful stop took %v", time.Since(start))
	for _, p := range pids {
		if !processGone(p) {
			t.Errorf("process %d still exists after Run returned", p)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, PidFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after stop: %v, want it removed", err)
	}
	if m.Pid() != 0 {
		t.Errorf("Pid() after stop = %d, want 0", m.Pid())
	}
	if _, err := get(f.port); err == nil {
		t.Error("frontend still answers after stop")
	}
}

func TestManagedDetachAndAdopt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m1 := f.managed()
	stop1 := f.run(m1)
	wantBody(t, f.port, "A")
	pid := m1.Pid()

	m1.Detach()
	if err := stop1(); err != nil {
		t.Fatalf("Run after Detach and cancel = %v, want nil", err)
	}
	if !isLiveHaproxy(pid) {
		t.Fatalf("haproxy %d gone after Detach", pid)
	}
	wantBody(t, f.port, "A")

	// A new Managed (a restarted clbd) adopts it and reloads the current
	// config into it.
	f.write(f.b, "")
	m2 := f.managed()
	stop2 := f.run(m2)
	if m2.Pid() != pid {
		t.Fatalf("adopting Managed runs pid %d, want the detached %d", m2.Pid(), pid)
	}
	wantBody(t, f.port, "B")
	if st := f.showProc(m2); st.master.Reloads != 1 {
		t.Errorf("adopted master: %d reloads, want 1", st.master.Reloads)
	}
	if err := stop2(); err != nil {
		t.Fatalf("Run of adopting Managed = %v", err)
	}
	eventually(t, 2*time.Second, "adopted master gone", func() error {
		if !processGone(pid) {
			return errors.New("still there")
		}
		return nil
	})
}

func TestManagedRestartsAdoptedMaster(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m1 := f.managed()
	stop1 := f.run(m1)
	m1.Detach()
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	m2 := f.managed()
	f.run(m2)
	old := m2.Pid()
	syscall.Kill(old, syscall.SIGKILL)
	eventually(t, 5*time.Second, "adopted master replaced", func() error {
		if pid := m2.Pid(); pid == 0 || pid == old {
			return errors.New("not restarted yet")
		}
		return nil
	})
	f.waitReady(m2)
	wantBody(t, f.port, "A")
}

func TestManagedStaleState(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// A pid file naming a process that is not haproxy (this test) and a
	// leftover socket file must not stop a fresh start.
	os.WriteFile(filepath.Join(f.dir, PidFileName), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(f.dir, MasterSocketName), nil, 0o600)
	m := f.managed()
	f.run(m)
	if m.Pid() == 1 {
		t.Fatal("adopted pid 1")
	}
	wantBody(t, f.port, "A")
}

func TestManagedErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	if err := m.Reload(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reload before Run = %v, want ErrNotRunning", err)
	}

	noBin := New(Options{Binary: filepath.Join(f.dir, "no-haproxy"), ConfigPath: f.cfg, Dir: f.dir})
	if err := noBin.Run(context.Background()); !errors.Is(err, ErrBinary) {
		t.Errorf("Run without binary = %v, want ErrBinary", err)
	}
	noCfg := New(Options{Binary: f.bin, ConfigPath: filepath.Join(f.dir, "none.cfg"), Dir: f.dir})
	if err := noCfg.Run(context.Background()); err == nil {
		t.Error("Run without config = nil error")
	}
	long := New(Options{Binary: f.bin, ConfigPath: f.cfg, Dir: "/tmp/" + strings.Repeat("d", 100)})
	if err := long.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Run with long socket path = %v, want a length error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := noBin.WaitReady(ctx); err == nil {
		t.Error("WaitReady after Run returned = nil error")
	}
}

// BenchmarkReload measures Reload, from the reload command to confirmation
// in show proc, alternating between two configs; it reports the median.
func BenchmarkReload(b *testing.B) {
	f := newFixture(b)
	m := New(Options{Binary: f.bin, ConfigPath: f.cfg, Dir: f.dir}) // quiet
	f.run(m)
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		server := f.a
		if i%2 == 0 {
			server = f.b
		}
		f.write(server, "")
		start := time.Now()
		if err := reload(b, m); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	median := took[len(took)/2]
	b.ReportMetric(float64(median.Microseconds())/1000, "ms-median/reload")
	b.Logf("%d reloads: median %v, min %v, max %v", len(took), median, took[0], took[len(took)-1])
}

// TestHelperDetachedStart is not a test: TestManagedAdoptsOrphan runs the
// test binary with it to play a clbd that starts haproxy, detaches and exits.
func TestHelperDetachedStart(t *testing.T) {
	dir := os.Getenv("CLB_HAPROXY_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	m := New(Options{Binary: os.Getenv("CLB_HAPROXY_HELPER_BIN"), ConfigPath: filepath.Join(dir, "haproxy.cfg"), Dir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := m.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	m.Detach()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestManagedAdoptsOrphan(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperDetachedStart$", "-test.count=1")
	helper.Env = append(os.Environ(), "CLB_HAPROXY_HELPER_DIR="+f.dir, "CLB_HAPROXY_HELPER_BIN="+f.bin)
	out, err := helper.CombinedOutput()
	pid := readPidFile(filepath.Join(f.dir, PidFileName))
	f.track(pid)
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !isLiveHaproxy(pid) {
		t.Fatalf("haproxy %d from the exited helper is not running\n%s", pid, out)
	}
	wantBody(t, f.port, "A")

	// Its output pipes are gone with the helper: the reload on adoption
	// makes it write to them, and it must survive that.
	f.write(f.b, "")
	m := f.managed()
	stop := f.run(m)
	if m.Pid() != pid {
		t.Fatalf("adopting Managed runs pid %d, want the orphan %d", m.Pid(), pid)
	}
	wantBody(t, f.port, "B")
	f.write(f.a, "")
	if err := reload(t, m); err != nil {
		t.Fatalf("second reload of the orphan: %v", err)
	}
	wantBody(t, f.port, "A")
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// Not our child: it is gone for us once it is a zombie; its reaper is
	// whoever inherited it.
	if isLiveHaproxy(pid) {
		t.Errorf("orphan haproxy %d still running after stop", pid)
	}
	if _, err := get(f.port); err == nil {
		t.Error("frontend still answers after stop")
	}
}

// slowBackend answers "slow" after release is closed or d has passed; it
// signals each request it receives on started.
func slowBackend(t *testing.T, d time.Duration) (addr string, started <-chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	start := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start <- struct{}{}
		select {
		case <-release:
		case <-time.After(d):
		}
		io.WriteString(w, "slow")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv.Listener.Addr().String(), start
}

func TestManagedStopIsGraceful(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	slow, started := slowBackend(t, 500*time.Millisecond)
	f.write(slow, "")
	m := f.managed()
	stop := f.run(m)

	res := make(chan error, 1)
	go func() {
		body, err := get(f.port)
		if err == nil && body != "slow" {
			err = fmt.Errorf("got %q", body)
		}
		res <- err
	}()
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if err := <-res; err != nil {
		t.Errorf("in-flight request during graceful stop: %v", err)
	}
}

func TestManagedStopEscalates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	slow, started := slowBackend(t, time.Minute)
	f.write(slow, "")
	m := New(Options{Binary: f.bin, ConfigPath: f.cfg, Dir: f.dir, StopTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
	stop := f.run(m)
	pid := m.Pid()

	go get(f.port)
	<-started
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(begin); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("stop with a hung request took %v, want StopTimeout (200ms) plus a SIGTERM", d)
	}
	if !processGone(pid) {
		t.Errorf("haproxy %d still exists", pid)
	}
}

func TestManagedGivesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	m.backoffMin, m.backoffMax, m.maxRestarts = 10*time.Millisecond, 40*time.Millisecond, 3
	stop := f.run(m)
	pid := m.Pid()

	// A master that dies with a config broken on disk cannot come back.
	f.write(f.a, "    no-such-keyword here\n")
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not give up")
	}
	err := stop() // Run has returned: this only collects its result
	t.Logf("Run: %v", err)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 restarts") || !strings.Contains(err.Error(), "no-such-keyword") {
		t.Errorf("Run = %v, want it to give up with haproxy's message", err)
	}
	if m.Pid() != 0 {
		t.Errorf("Pid() = %d after giving up", m.Pid())
	}
}

func TestManagedConcurrentReloads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := f.managed()
	f.run(m)
	// The master drops a reload sent while it reloads: Reload serialises.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = reload(t, m) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Reload %d: %v", i, err)
		}
	}
	if st := f.showProc(m); st.master.Reloads != len(errs) {
		t.Errorf("master reloads = %d, want %d", st.master.Reloads, len(errs))
	}
	wantBody(t, f.port, "A")
}

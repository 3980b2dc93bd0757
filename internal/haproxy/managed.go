package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// MasterSocketName is the master CLI socket's file name in Options.Dir.
	MasterSocketName = "haproxy-master.sock"
	// PidFileName is the master's pid file name in Options.Dir.
	PidFileName = "haproxy.pid"

	defaultStopTimeout = 10 * time.Second
	// termGrace is how long a master gets after SIGTERM before SIGKILL.
	termGrace = 3 * time.Second
	// killWait bounds the wait for a SIGKILLed process to disappear.
	killWait = 5 * time.Second

	defaultBackoffMin = 100 * time.Millisecond
	defaultBackoffMax = 5 * time.Second
	// A master that stayed up this long counts as having started fine:
	// its next death starts the backoff and the restart budget afresh.
	stableAfter = 10 * time.Second
	// defaultMaxRestarts bounds consecutive restarts of a master that keeps
	// dying.
	defaultMaxRestarts = 10

	// outputGrace bounds the wait for the last output of a dead master.
	outputGrace = 200 * time.Millisecond

	pollEvery = 20 * time.Millisecond
	// adoptedPollEvery is how often the liveness of an adopted master,
	// which is not our child and cannot be waited for, is checked.
	adoptedPollEvery = 100 * time.Millisecond
	// maxSocketPath leaves room for the ".<pid>.tmp" suffix haproxy adds
	// while binding a UNIX socket within the 108-byte sun_path.
	maxSocketPath = 96
	// recentLines is how many lines of haproxy output are kept to explain
	// a failed reload.
	recentLines = 64
)

// Options configures a Managed haproxy.
type Options struct {
	// Binary is the haproxy executable; "haproxy" (looked up in PATH) when empty.
	Binary string
	// ConfigPath is the rendered configuration; it must exist and be valid
	// before Run.
	ConfigPath string
	// Dir is the state directory holding the master socket
	// (haproxy-master.sock) and the pid file (haproxy.pid).
	Dir string
	// StopTimeout bounds the graceful stop; 10 s when zero.
	StopTimeout time.Duration
	// Logger receives haproxy's output and lifecycle events; nil discards.
	Logger *slog.Logger
}

// Managed is clbd's own haproxy in master-worker mode: Run starts it (or
// adopts one left running by a previous clbd), restarts it when it dies and
// stops it when its context ends; Reload makes it load the configuration
// file again and confirms the outcome. The output of an adopted master went
// to pipes of the clbd that started it and is lost (haproxy survives that);
// its failed reloads are explained by `haproxy -c` instead.
type Managed struct {
	opts    Options
	log     *slog.Logger
	sock    string
	pidFile string

	// reloadMu serialises reloads, and reloads with (re)starts: the master
	// drops a reload that arrives while it is reloading.
	reloadMu sync.Mutex

	mu     sync.Mutex
	cur    *process // nil when no master runs
	ran    bool     // Run was called
	recent []outputLine
	done   chan struct{} // closed when Run returns
	detach atomic.Bool
	// restarts counts masters started again after one died.
	restarts atomic.Uint64

	// Restart policy; tests shorten it.
	backoffMin, backoffMax time.Duration
	maxRestarts            int
}

// process is one haproxy master, our child or adopted.
type process struct {
	pid     int
	pgid    int // process group to clean up after the master, 0 if unknown
	child   bool
	started time.Time
	exited  chan struct{} // closed when the master is gone
	err     error         // exit status of a child, set before exited closes
	// outDone is closed when a child's output has been read to the end
	// (its workers share the pipes); nil for an adopted master.
	outDone chan struct{}
}

type outputLine struct {
	at   time.Time
	text string
}

// New returns a Managed for opts, filling in defaults. Nothing runs until Run.
func New(opts Options) *Managed {
	if opts.Binary == "" {
		opts.Binary = "haproxy"
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = defaultStopTimeout
	}
	// The master re-executes itself on reload with the same arguments:
	// make them independent of the working directory.
	if abs, err := filepath.Abs(opts.ConfigPath); err == nil && opts.ConfigPath != "" {
		opts.ConfigPath = abs
	}
	if abs, err := filepath.Abs(opts.Dir); err == nil && opts.Dir != "" {
		opts.Dir = abs
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Managed{
		opts:    opts,
		log:     log,
		sock:    filepath.Join(opts.Dir, MasterSocketName),
		pidFile: filepath.Join(opts.Dir, PidFileName),
		done:    make(chan struct{}),

		backoffMin:  defaultBackoffMin,
		backoffMax:  defaultBackoffMax,
		maxRestarts: defaultMaxRestarts,
	}
}

// MasterSocket returns the path of the master CLI socket.
func (m *Managed) MasterSocket() string { return m.sock }

// Pid returns the pid of the running haproxy master, or 0 when none runs.
func (m *Managed) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return 0
	}
	return m.cur.pid
}

// Restarts is how many times haproxy was started again after its master died.
func (m *Managed) Restarts() uint64 { return m.restarts.Load() }

// Detach makes the next return of Run leave haproxy running, so that a
// re-executed clbd can adopt it without interrupting traffic.
func (m *Managed) Detach() { m.detach.Store(true) }

func (m *Managed) current() *process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

func (m *Managed) setCurrent(p *process) {
	m.mu.Lock()
	m.cur = p
	m.mu.Unlock()
}

func (m *Managed) validate() error {
	switch {
	case m.opts.ConfigPath == "":
		return errors.New("managed haproxy: no config path")
	case m.opts.Dir == "":
		return errors.New("managed haproxy: no state dir")
	case len(m.sock) > maxSocketPath:
		return fmt.Errorf("managed haproxy: master socket path %s is %d bytes, limit %d", m.sock, len(m.sock), maxSocketPath)
	case strings.Contains(m.sock, ","):
		// -S takes "path,option,value..."
		return fmt.Errorf("managed haproxy: master socket path %s contains a comma", m.sock)
	}
	if _, err := os.Stat(m.opts.ConfigPath); err != nil {
		return fmt.Errorf("managed haproxy: config: %w", err)
	}
	if err := os.MkdirAll(m.opts.Dir, 0o750); err != nil {
		return fmt.Errorf("managed haproxy: state dir: %w", err)
	}
	return nil
}

// Run starts haproxy, or adopts the master named by the pid file in Dir
// when it is a live haproxy answering on the master socket (and reloads it
// to pick up the current config). It restarts haproxy with backoff when it
// dies, and when ctx ends stops it gracefully (soft stop, then SIGTERM after
// StopTimeout, then SIGKILL) unless Detach was called. It returns nil after
// a stop requested by ctx, once the master is gone; an error when haproxy
// cannot be kept running. Run may be called once.
func (m *Managed) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.ran {
		m.mu.Unlock()
		return errors.New("managed haproxy: Run called twice")
	}
	m.ran = true
	m.mu.Unlock()
	defer close(m.done)
	defer m.setCurrent(nil)

	if err := m.validate(); err != nil {
		return err
	}

	p := m.adopt(ctx)
	if p != nil {
		m.setCurrent(p)
		if err := m.Reload(ctx); err != nil {
			m.log.Error("reload of adopted haproxy failed, it keeps its previous config", "pid", p.pid, "err", err)
		}
	} else {
		m.reloadMu.Lock()
		np, err := m.start()
		m.reloadMu.Unlock()
		if err != nil {
			return err
		}
		p = np
		m.setCurrent(p)
	}
	return m.supervise(ctx, p)
}

func (m *Managed) supervise(ctx context.Context, p *process) error {
	backoff := m.backoffMin
	failures := 0
	var lastErr error
	lastStart := time.Now()
	for {
		if p == nil {
			lastStart = time.Now()
			m.reloadMu.Lock()
			np, err := m.start()
			m.reloadMu.Unlock()
			if err != nil {
				lastErr = err
				m.log.Error("haproxy restart failed", "err", err)
			} else {
				p = np
				m.setCurrent(p)
				m.restarts.Add(1)
			}
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.exited
		}
		if exited != nil {
			select {
			case <-ctx.Done():
				if m.detach.Load() {
					m.log.Info("leaving haproxy running", "pid", p.pid)
					return nil
				}
				return m.stop(p)
			case <-exited:
			}
			p.waitOutput(outputGrace)
			lived := time.Since(p.started)
			lastErr = p.exitErr()
			m.log.Warn("haproxy master exited unexpectedly", "pid", p.pid, "uptime", lived.Round(time.Millisecond), "err", lastErr)
			m.setCurrent(nil)
			m.cleanGroup(p, syscall.SIGTERM)
			if lived >= stableAfter {
				backoff, failures = m.backoffMin, 0
			}
			p = nil
		}
		failures++
		if failures > m.maxRestarts {
			return fmt.Errorf("managed haproxy: gave up after %d restarts: %w%s", m.maxRestarts, lastErr, m.recentAlerts(lastStart))
		}
		m.log.Info("restarting haproxy", "in", backoff, "attempt", failures)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, m.backoffMax)
	}
}

// waitOutput waits up to d for a child's last output lines to be logged,
// so that the messages explaining an exit come before it is reported.
func (p *process) waitOutput(d time.Duration) {
	if p.outDone == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.outDone:
	case <-t.C:
	}
}

func (p *process) exitErr() error {
	if !p.child {
		return errors.New("adopted master is gone")
	}
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

// start runs a new master as our child, in its own process group so that a
// Ctrl-C on clbd's terminal does not reach it directly.
func (m *Managed) start() (*process, error) {
	if err := os.Remove(m.pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("managed haproxy: remove stale pid file: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("managed haproxy: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("managed haproxy: %w", err)
	}
	// Our own pipes rather than an io.Writer: with a writer, cmd.Wait would
	// also wait for the workers, which inherit stdout and stderr.
	cmd := exec.Command(m.opts.Binary,
		"-W", "-S", m.sock+",mode,600", "-f", m.opts.ConfigPath, "-p", m.pidFile)
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("managed haproxy: start %s: %w: %w", m.opts.Binary, ErrBinary, err)
	}
	p := &process{
		pid:     cmd.Process.Pid,
		pgid:    cmd.Process.Pid,
		child:   true,
		started: time.Now(),
		exited:  make(chan struct{}),
	}
	p.outDone = make(chan struct{})
	var copying sync.WaitGroup
	copying.Go(func() { m.copyOutput(outR, "stdout") })
	copying.Go(func() { m.copyOutput(errR, "stderr") })
	go func() {
		copying.Wait()
		close(p.outDone)
	}()
	// This goroutine also reaps a detached child, should this process
	// outlive the Run that started it.
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	m.log.Info("started haproxy", "pid", p.pid, "path", m.opts.ConfigPath)
	return p, nil
}

// copyOutput logs haproxy's output line by line and keeps the latest lines
// to explain failed reloads.
func (m *Managed) copyOutput(r *os.File, stream string) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		level := slog.LevelInfo
		if stream == "stderr" && !strings.HasPrefix(line, "[NOTICE]") {
			level = slog.LevelWarn
		}
		m.log.Log(context.Background(), level, "haproxy", "stream", stream, "line", line)
		m.mu.Lock()
		if len(m.recent) == recentLines {
			copy(m.recent, m.recent[1:])
			m.recent = m.recent[:recentLines-1]
		}
		m.recent = append(m.recent, outputLine{at: time.Now(), text: line})
		m.mu.Unlock()
	}
}

// recentAlerts returns "; " and the ALERT lines haproxy printed since t, or
// "" when there are none.
func (m *Managed) recentAlerts(since time.Time) string {
	m.mu.Lock()
	var b strings.Builder
	for _, l := range m.recent {
		if !l.at.Before(since) && strings.HasPrefix(l.text, "[ALERT]") {
			b.WriteString(l.text)
			b.WriteByte('\n')
		}
	}
	m.mu.Unlock()
	if b.Len() == 0 {
		return ""
	}
	return ": " + TrimOutput([]byte(b.String()))
}

// adopt returns the master named by the pid file when it is a live haproxy
// answering on our master socket. A live haproxy that does not answer is
// stopped, so that a new one does not share its ports.
func (m *Managed) adopt(ctx context.Context) *process {
	pid := readPidFile(m.pidFile)
	if pid <= 0 || !isLiveHaproxy(pid) {
		return nil
	}
	p := &process{pid: pid, started: time.Now(), exited: make(chan struct{})}
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		p.pgid = pgid
	}
	go m.watchAdopted(p)

	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := showProc(sctx, m.sock)
	cancel()
	if err != nil || st.master.PID != pid {
		if err == nil {
			err = fmt.Errorf("master socket is answered by pid %d", st.master.PID)
		}
		m.log.Warn("pid file names a running haproxy that cannot be adopted, stopping it", "pid", pid, "path", m.pidFile, "err", err)
		if err := m.stop(p); err != nil {
			m.log.Error("stopping unadoptable haproxy", "pid", pid, "err", err)
		}
		return nil
	}
	m.log.Info("adopted running haproxy", "pid", pid, "reloads", st.master.Reloads)
	return p
}

// watchAdopted polls the liveness of a master that is not our child.
func (m *Managed) watchAdopted(p *process) {
	t := time.NewTicker(adoptedPollEvery)
	defer t.Stop()
	for {
		if !isLiveHaproxy(p.pid) {
			close(p.exited)
			return
		}
		select {
		case <-t.C:
		case <-m.done:
			return
		}
	}
}

// stop ends p: soft stop (SIGUSR1: listeners close, in-flight requests
// finish), then SIGTERM, then SIGKILL; then removes the pid file and socket.
func (m *Managed) stop(p *process) error {
	// A reload in flight would have the master re-execute, and a signal
	// arriving then meets default handlers; a reload after the soft stop
	// would fork new workers. Wait for the one in flight, bar later ones.
	if m.lockReloads(m.opts.StopTimeout) {
		defer m.reloadMu.Unlock()
	} else {
		m.log.Warn("stopping haproxy during a reload that does not end", "pid", p.pid)
	}
	defer m.setCurrent(nil)
	m.log.Info("stopping haproxy", "pid", p.pid, "timeout", m.opts.StopTimeout)
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGUSR1, m.opts.StopTimeout},
		{syscall.SIGTERM, termGrace},
		{syscall.SIGKILL, killWait},
	}
	gone := false
	for i, s := range steps {
		if i > 0 {
			m.log.Warn("haproxy did not stop in time, escalating", "pid", p.pid, "signal", s.sig.String())
		}
		if err := m.signal(p, s.sig); err != nil {
			m.log.Warn("signal haproxy", "pid", p.pid, "signal", s.sig.String(), "err", err)
		}
		if s.sig == syscall.SIGKILL {
			m.cleanGroup(p, syscall.SIGKILL)
		}
		t := time.NewTimer(s.wait)
		select {
		case <-p.exited:
			gone = true
		case <-t.C:
		}
		t.Stop()
		if gone {
			break
		}
	}
	if !gone {
		return fmt.Errorf("managed haproxy: pid %d still running after SIGKILL", p.pid)
	}
	// Workers of a master that had to be killed may linger.
	m.cleanGroup(p, syscall.SIGKILL)
	for _, f := range []string{m.pidFile, m.sock} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("remove haproxy state file", "path", f, "err", err)
		}
	}
	m.log.Info("haproxy stopped", "pid", p.pid)
	return nil
}

// lockReloads takes reloadMu, giving up after d.
func (m *Managed) lockReloads(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !m.reloadMu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

func (m *Managed) signal(p *process, sig syscall.Signal) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if !p.child && !isLiveHaproxy(p.pid) {
		return nil // gone, and the pid might be reused
	}
	return syscall.Kill(p.pid, sig)
}

// cleanGroup signals what is left of p's process group once p is gone: a
// master's workers share its group and outlive a killed master for a while.
// The group id cannot be reused while the group has members.
func (m *Managed) cleanGroup(p *process, sig syscall.Signal) {
	if p.pgid <= 0 {
		return
	}
	select {
	case <-p.exited:
	default:
		return // the master itself still runs and handles its workers
	}
	left := groupMembers(p.pgid)
	if len(left) == 0 {
		return
	}
	m.log.Warn("signalling processes left by haproxy master", "pid", p.pid, "left", left, "signal", sig.String())
	_ = syscall.Kill(-p.pgid, sig)
}

// groupMembers lists the processes of group pgid that are not zombies (a
// dead master that its reaper has not waited for yet is still a member).
func groupMembers(pgid int) []int {
	if syscall.Kill(-pgid, 0) != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pgrp, ok := procStat(pid)
		if ok && pgrp == pgid && state != 'Z' && state != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat returns the state and process group from /proc/PID/stat.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may itself contain them:
	// the fields "state ppid pgrp ..." follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pgrp, true
}

// WaitReady waits until the master answers on its socket and has a current
// worker. It fails when ctx ends first or when Run has returned.
func (m *Managed) WaitReady(ctx context.Context) error {
	var lastErr error = ErrNotRunning
	for {
		if pid := m.Pid(); pid != 0 {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := showProc(sctx, m.sock)
			cancel()
			switch {
			case err != nil:
				lastErr = err
			case st.master.PID != pid:
				lastErr = fmt.Errorf("master socket answered by pid %d, want %d", st.master.PID, pid)
			case len(st.workers) == 0:
				lastErr = errors.New("no worker yet")
			default:
				return nil
			}
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for haproxy: %w (last: %w)", ctx.Err(), lastErr)
		case <-m.done:
			t.Stop()
			return errors.New("wait for haproxy: Run has returned")
		case <-t.C:
		}
	}
}

// Reload makes the master load the configuration file again ("reload" on
// the master socket) and confirms from `show proc` that the master
// re-executed, that a new worker runs and that the failed-reload count did
// not grow. It returns an error wrapping ErrReloadFailed, with haproxy's
// messages, when the new configuration was not loaded (the old worker keeps
// serving), and ErrNotRunning when no master runs. Reloads are serialised.
// Without a deadline on ctx, 30 s apply.
func (m *Managed) Reload(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, defaultCommandTimeout)
	defer cancel()
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()

	p := m.current()
	if p == nil {
		return fmt.Errorf("reload: %w", ErrNotRunning)
	}
	before, err := showProc(ctx, m.sock)
	if err != nil {
		return fmt.Errorf("reload: read state: %w", err)
	}
	if before.master.PID != p.pid {
		return fmt.Errorf("reload: master socket answered by pid %d, want %d", before.master.PID, p.pid)
	}
	began := time.Now()
	// The master re-executes without answering: the outcome comes from
	// show proc below, so an error here (other than no answer at all, which
	// the wait below also sees) says nothing.
	if _, err := MasterCommand(ctx, m.sock, "reload"); err != nil {
		m.log.Debug("reload command", "err", err)
	}

	var after procState
	for {
		st, err := showProc(ctx, m.sock)
		if err == nil && st.master.Reloads > before.master.Reloads {
			after = st
			break
		}
		if err == nil {
			err = errors.New("reload count unchanged")
		}
		t := time.NewTimer(pollEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("reload: no confirmation from the master: %w (last: %w)", ctx.Err(), err)
		case <-p.exited:
			t.Stop()
			return fmt.Errorf("reload: %w: haproxy master exited", ErrReloadFailed)
		case <-t.C:
		}
	}
	if after.master.Failed > before.master.Failed || !after.hasWorker(before.workerPIDs()) {
		return fmt.Errorf("reload: %w (failed reloads in a row: %d)%s", ErrReloadFailed, after.master.Failed, m.failureDetail(ctx, began))
	}
	m.log.Info("haproxy reloaded", "pid", p.pid, "reloads", after.master.Reloads, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// failureDetail explains a failed reload: haproxy's ALERT lines when it is
// our child, otherwise what `haproxy -c` says about the config.
func (m *Managed) failureDetail(ctx context.Context, since time.Time) string {
	if p := m.current(); p != nil && p.child {
		// The alerts were written before the master answered, but our
		// reader may not have got to them yet.
		for range 5 {
			if s := m.recentAlerts(since); s != "" {
				return s
			}
			time.Sleep(pollEvery)
		}
	}
	if err := Check(ctx, m.opts.Binary, m.opts.ConfigPath); err != nil {
		return ": " + err.Error()
	}
	return ""
}

func readPidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// isLiveHaproxy reports whether pid is a running (not zombie) haproxy
// process that we may signal.
func isLiveHaproxy(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	state, _, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
		return strings.Contains(filepath.Base(exe), "haproxy")
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	return strings.Contains(filepath.Base(argv0), "haproxy")
}

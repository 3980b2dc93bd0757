package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"clb/internal/atomicfile"
	"clb/internal/haproxy"
	"clb/internal/render"
	"clb/internal/store"
)

// Reloader makes haproxy load the config file that was just installed.
type Reloader interface {
	Reload(ctx context.Context) error
}

// Apply outcomes, as reported in /v1/status and logs.
const (
	applyUnchanged = "unchanged" // rendered bytes equal the installed config: no write, no reload
	applyReload    = "reload"
	applyInstalled = "installed" // written, haproxy not reloaded (not running yet)
)

// result is the outcome of one apply, sent to every API call that waited for it.
type result struct {
	Err  error
	Path string
}

// ApplyStatus is the last apply, as /v1/status shows it.
type ApplyStatus struct {
	Result     string    `json:"result"`
	Error      string    `json:"error,omitempty"`
	Path       string    `json:"path,omitempty"`
	Time       time.Time `json:"time"`
	DurationMS float64   `json:"duration_ms"`
	Checksum   string    `json:"config_sha256,omitempty"`
	Generation uint64    `json:"generation"`
}

type waiter struct {
	ticket uint64
	ch     chan result
}

// reconciler is the one writer: the only goroutine that renders, installs haproxy.cfg and
// reloads haproxy. Everything else asks it to apply through trigger and waits for the answer.
type reconciler struct {
	log      *slog.Logger
	store    *store.Store
	config   func() *Config
	tmplDir  string
	output   string
	lastGood string
	bin      string
	admin    string
	reloader Reloader
	quiet    time.Duration
	maxWait  time.Duration

	kick chan struct{}

	mu        sync.Mutex
	requested uint64 // tickets handed out
	waiters   []waiter
	installed []byte // bytes of the config haproxy runs, as far as clbd knows
	status    ApplyStatus
	reloads   uint64
	failures  uint64
	running   bool // haproxy is up and can be reloaded
}

// trigger asks for an apply that includes every change made before the call, and returns a
// channel that receives its outcome.
func (r *reconciler) trigger() <-chan result {
	r.mu.Lock()
	r.requested++
	w := waiter{ticket: r.requested, ch: make(chan result, 1)}
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return w.ch
}

// Run applies whenever triggered, coalescing bursts: after the first request it waits for a
// quiet period without requests, but never longer than maxWait. A failed apply is retried with
// backoff (1 s doubling to 30 s), so that changes already stored reach haproxy once the cause
// (a broken template, a failing reload command) is fixed, without another call.
func (r *reconciler) Run(ctx context.Context) error {
	var retry <-chan time.Time
	var backoff time.Duration
	for {
		select {
		case <-ctx.Done():
			r.finish(^uint64(0), result{Err: fmt.Errorf("clbd is shutting down: %w", ctx.Err())})
			return nil
		case <-r.kick:
		case <-retry:
		}
		r.coalesce(ctx)
		r.mu.Lock()
		ticket := r.requested
		r.mu.Unlock()
		res := r.apply(ctx)
		r.finish(ticket, res)
		retry = nil
		if res.Err != nil {
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			retry = time.After(backoff)
		} else {
			backoff = 0
		}
	}
}

func (r *reconciler) coalesce(ctx context.Context) {
	if r.quiet <= 0 {
		return
	}
	deadline := time.NewTimer(r.maxWait)
	defer deadline.Stop()
	quiet := time.NewTimer(r.quiet)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-quiet.C:
			return
		case <-r.kick:
			quiet.Reset(r.quiet)
		}
	}
}

func (r *reconciler) finish(ticket uint64, res result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rest := r.waiters[:0]
	for _, w := range r.waiters {
		if w.ticket <= ticket {
			w.ch <- res
		} else {
			rest = append(rest, w)
		}
	}
	r.waiters = rest
}

// pending is the number of requests not yet covered by an apply.
func (r *reconciler) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiters)
}

func (r *reconciler) lastStatus() (ApplyStatus, uint64, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.reloads, r.failures
}

func (r *reconciler) setRunning(v bool) {
	r.mu.Lock()
	r.running = v
	r.mu.Unlock()
}

// loadInstalled remembers what the output file holds at start, so an unchanged render after a
// restart of clbd neither writes nor reloads.
func (r *reconciler) loadInstalled() {
	data, err := os.ReadFile(r.output)
	if err == nil {
		r.mu.Lock()
		r.installed = data
		r.mu.Unlock()
	}
}

// render produces the config for the current config, template and state.
func (r *reconciler) render() ([]byte, uint64, error) {
	tmpl, source, err := render.Load(r.tmplDir)
	if err != nil {
		return nil, 0, fmt.Errorf("template %s: %w", source, err)
	}
	snap := r.store.Snapshot()
	out, err := render.Render(tmpl, r.config().renderData(snap, source, r.admin))
	return out, snap.Generation, err
}

// apply runs the pipeline once: render → skip if unchanged → haproxy -c on a temp file →
// atomic install → reload → keep a last-known-good copy; on failure restore it.
func (r *reconciler) apply(ctx context.Context) result {
	start := time.Now()
	out, gen, err := r.render()
	res := result{Err: err}
	if err == nil {
		res = r.install(ctx, out)
	}
	st := ApplyStatus{Result: "ok", Path: res.Path, Time: start, DurationMS: float64(time.Since(start).Microseconds()) / 1000, Generation: gen}
	r.mu.Lock()
	if res.Err != nil {
		st.Result, st.Error = "error", res.Err.Error()
		r.failures++
	}
	if res.Path == applyReload && res.Err == nil {
		r.reloads++
	}
	st.Checksum = checksum(r.installed)
	r.status = st
	r.mu.Unlock()
	if res.Err != nil {
		r.log.Error("apply failed; haproxy keeps its last good config", "err", res.Err, "generation", gen)
	} else if res.Path != applyUnchanged {
		r.log.Info("applied", "path", res.Path, "generation", gen, "duration_ms", st.DurationMS)
	}
	return res
}

func (r *reconciler) install(ctx context.Context, out []byte) result {
	r.mu.Lock()
	same, running := bytes.Equal(out, r.installed), r.running
	prev := r.installed
	r.mu.Unlock()
	if same {
		return result{Path: applyUnchanged}
	}
	tmp, err := atomicfile.WriteTemp(r.output, out, 0o644)
	if err != nil {
		return result{Err: err}
	}
	if err := haproxy.Check(ctx, r.bin, tmp); err != nil {
		os.Remove(tmp)
		return result{Err: fmt.Errorf("haproxy refused the new config: %w", err)}
	}
	if err := atomicfile.Install(tmp, r.output); err != nil {
		return result{Err: err}
	}
	path := applyInstalled
	if running && r.reloader != nil {
		path = applyReload
		if err := r.reloader.Reload(ctx); err != nil {
			return result{Path: path, Err: r.restore(prev, err)}
		}
	}
	r.mu.Lock()
	r.installed = out
	r.mu.Unlock()
	if err := atomicfile.Write(r.lastGood, out, 0o600); err != nil {
		r.log.Warn("save last-known-good config", "path", r.lastGood, "err", err)
	}
	return result{Path: path}
}

// restore puts the last-known-good config back after a failed reload, so that the file on
// disk is again the one haproxy runs and a later start or reload does not pick up the bad one.
func (r *reconciler) restore(prev []byte, reloadErr error) error {
	err := fmt.Errorf("reload haproxy: %w", reloadErr)
	if prev == nil {
		return fmt.Errorf("%w (no last-known-good config to restore)", err)
	}
	if werr := atomicfile.Write(r.output, prev, 0o644); werr != nil {
		return errors.Join(err, fmt.Errorf("restore last-known-good config: %w", werr))
	}
	return fmt.Errorf("%w (last-known-good config restored)", err)
}

func checksum(b []byte) string {
	if b == nil {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

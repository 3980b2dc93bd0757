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
)

// Reloader makes haproxy load the config file that was just installed.
type Reloader interface {
	Reload(ctx context.Context) error
}

// Apply paths, as reported in /v1/status, metrics and logs.
const (
	applyUnchanged = "unchanged" // rendered bytes equal the installed config: no write, no reload
	applyRuntime   = "runtime"   // only servers changed: runtime API, file rewritten, no reload
	applyReload    = "reload"
	applyFallback  = "runtime-failed-reload" // a runtime command failed; a reload applied it
	applyInstalled = "installed"             // written, haproxy not reloaded (not running yet)
)

// result is the outcome of one apply, sent to every API call that waited for it.
type result struct {
	Err  error
	Path string
	// drains started by this apply: callers are answered when they are over.
	drains []drain
	// runtimeErr is the runtime failure a reload made up for.
	runtimeErr error
	// deferred: the change needs a reload, which apply was not allowed to do yet (Run waits
	// for the quiet period first, so that a burst costs one reload).
	deferred bool
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
	// RuntimeError is the runtime command that failed when Path is runtime-failed-reload.
	RuntimeError string `json:"runtime_error,omitempty"`
}

type waiter struct {
	ticket uint64
	ch     chan result
	// member, when set, is a member being unregistered: the answer waits until no server of
	// that name is draining.
	member string
}

// reconciler is the one writer: the only goroutine that renders, installs haproxy.cfg and
// reloads haproxy. Everything else asks it to apply through trigger and waits for the answer.
type reconciler struct {
	log      *slog.Logger
	store    memberStore
	config   func() *Config
	tmplDir  string
	output   string
	lastGood string
	bin      string
	admin    string
	reloader Reloader
	quiet    time.Duration
	maxWait  time.Duration
	// stateFile is haproxy's server-state-file, dumped before every reload ("" = none).
	stateFile string
	// dial connects to the admin socket; nil when there is none (reload path only).
	dial func(ctx context.Context) (runtimeClient, error)
	rt   runtimeClient
	// drainFor is the draining timeout of a backend's service.
	drainFor func(backend string) time.Duration
	metrics  *metrics

	kick chan struct{}
	// drains in progress and the callers waiting for them (reconciler goroutine only).
	drains  map[string]*drain
	batches []*drainBatch

	mu        sync.Mutex
	requested uint64 // tickets handed out
	waiters   []waiter
	installed []byte // bytes of the config haproxy runs, as far as clbd knows
	status    ApplyStatus
	reloads   uint64
	failures  uint64
	// fallbacks counts runtime changes that failed and were applied by a reload instead;
	// runtimeErr is the last such failure.
	fallbacks  uint64
	runtimeErr string
	running    bool // haproxy is up and can be reloaded
	forced     map[string]string
	draining   int
	health     map[string]map[string]string
	// installedCfg is installed, parsed (reconciler goroutine only; nil = parse it again).
	installedCfg *parsedConfig
}

// drainBatch holds a caller until the drains of the member it unregistered are over.
type drainBatch struct {
	pending map[string]bool
	waiters []waiter
	res     result
}

// trigger asks for an apply that includes every change made before the call, and returns a
// channel that receives its outcome.
func (r *reconciler) trigger() <-chan result { return r.triggerFor("") }

// triggerFor is trigger for the unregistration of member: the outcome comes once the member's
// servers are drained and deleted, whichever apply took them out (the change may have been
// rendered by an apply that started before this call).
func (r *reconciler) triggerFor(member string) <-chan result {
	r.mu.Lock()
	r.requested++
	w := waiter{ticket: r.requested, ch: make(chan result, 1), member: member}
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return w.ch
}

// Run applies whenever triggered. A change the runtime API can apply is applied at once (the
// requests that arrive meanwhile are batched into the next apply). A change that needs a
// reload waits for a quiet period without requests, but never longer than maxWait, so a burst
// costs one reload. A failed apply is retried with backoff (1 s doubling to 30 s), so that
// changes already stored reach haproxy once the cause (a broken template, a failing reload
// command) is fixed, without another call.
func (r *reconciler) Run(ctx context.Context) error {
	var retry <-chan time.Time
	var backoff time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	healthTick := time.NewTicker(2 * time.Second)
	defer healthTick.Stop()
	r.pollHealth(ctx)
	for {
		var drainTick <-chan time.Time
		if len(r.drains) > 0 {
			drainTick = tick.C
		}
		select {
		case <-ctx.Done():
			r.finish(^uint64(0), result{Err: fmt.Errorf("clbd is shutting down: %w", ctx.Err())})
			r.endDrains(fmt.Errorf("clbd is shutting down: %w", ctx.Err()))
			return nil
		case <-drainTick:
			r.progressDrains()
			continue
		case <-healthTick.C:
			r.pollHealth(ctx)
			continue
		case <-r.kick:
		case <-retry:
		}
		ticket, res := r.applyOnce(ctx, r.quiet <= 0)
		if res.deferred {
			r.coalesce(ctx)
			ticket, res = r.applyOnce(ctx, true)
		}
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

// applyOnce applies every change requested so far and returns the last ticket it covers.
func (r *reconciler) applyOnce(ctx context.Context, reload bool) (uint64, result) {
	r.mu.Lock()
	ticket := r.requested
	r.mu.Unlock()
	return ticket, r.apply(ctx, reload)
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
	var covered []waiter
	rest := r.waiters[:0]
	for _, w := range r.waiters {
		if w.ticket <= ticket {
			covered = append(covered, w)
		} else {
			rest = append(rest, w)
		}
	}
	r.waiters = rest
	r.mu.Unlock()
	for _, d := range res.drains {
		if r.drains == nil {
			r.drains = map[string]*drain{}
		}
		r.drains[d.key()] = &d
	}
	r.setDraining()
	for _, w := range covered {
		pending := map[string]bool{}
		if w.member != "" && res.Err == nil {
			for key, d := range r.drains {
				if d.name == w.member {
					pending[key] = true
				}
			}
		}
		if len(pending) == 0 {
			w.ch <- res
			continue
		}
		r.batches = append(r.batches, &drainBatch{pending: pending, waiters: []waiter{w}, res: result{Path: res.Path}})
	}
}

// progressDrains retries `del server` for every draining server and answers the callers whose
// drains are all over.
func (r *reconciler) progressDrains() {
	now := time.Now()
	for key, d := range r.drains {
		done, err := false, error(nil)
		if r.rt == nil {
			done, err = true, errors.New("runtime API gone")
		} else {
			done, err = retryDrain(r.rt, d, now)
		}
		if err != nil {
			r.log.Warn("drain", "server", key, "err", err)
		}
		if done {
			r.log.Info("drained and removed", "server", key)
			r.endDrain(key)
		}
	}
	r.setDraining()
}

func (r *reconciler) endDrain(key string) {
	delete(r.drains, key)
	rest := r.batches[:0]
	for _, b := range r.batches {
		delete(b.pending, key)
		if len(b.pending) == 0 {
			for _, w := range b.waiters {
				w.ch <- b.res
			}
			continue
		}
		rest = append(rest, b)
	}
	r.batches = rest
}

// endDrains ends every drain: after a reload the new worker no longer has those servers, and
// the old one finishes their requests by itself.
func (r *reconciler) endDrains(err error) {
	for key := range r.drains {
		r.endDrain(key)
	}
	for _, b := range r.batches { // only reachable if a batch had no drains left to end
		for _, w := range b.waiters {
			w.ch <- result{Err: err}
		}
	}
	r.batches = nil
	r.setDraining()
}

func (r *reconciler) setDraining() {
	r.mu.Lock()
	r.draining = len(r.drains)
	r.mu.Unlock()
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

// runtimeStatus is the backends forced onto the reload path and the servers draining.
func (r *reconciler) runtimeStatus() (map[string]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forced, r.draining
}

// fallbackStatus is how many runtime changes a reload made up for, and the last failure.
func (r *reconciler) fallbackStatus() (uint64, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fallbacks, r.runtimeErr
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
	if err := r.store.Ready(); err != nil {
		// Not read yet (etcd unreachable since start): an empty membership would drain
		// every member. haproxy keeps what it runs.
		return nil, 0, err
	}
	snap := r.store.Snapshot()
	out, err := render.Render(tmpl, r.config().renderData(snap, render.Data{TemplateSource: source, AdminSocket: r.admin, ServerStateFile: r.stateFile}))
	return out, snap.Generation, err
}

// apply runs the pipeline once: render → skip if unchanged → haproxy -c on a temp file →
// atomic install → reload → keep a last-known-good copy; on failure restore it.
//
// With reload false, a change that would need a reload is left alone and reported deferred.
func (r *reconciler) apply(ctx context.Context, reload bool) result {
	start := time.Now()
	out, gen, err := r.render()
	res := result{Err: err}
	if err == nil {
		res = r.install(ctx, out, reload)
	}
	if res.deferred {
		return res
	}
	st := ApplyStatus{Result: "ok", Path: res.Path, Time: start, DurationMS: float64(time.Since(start).Microseconds()) / 1000, Generation: gen}
	r.mu.Lock()
	if res.Err != nil {
		st.Result, st.Error = "error", res.Err.Error()
		r.failures++
	}
	if (res.Path == applyReload || res.Path == applyFallback) && res.Err == nil {
		r.reloads++
	}
	if res.runtimeErr != nil {
		st.RuntimeError = res.runtimeErr.Error()
		r.fallbacks++
		r.runtimeErr = st.RuntimeError
	}
	st.Checksum = checksum(r.installed)
	r.status = st
	r.mu.Unlock()
	r.metrics.observeApply(res.Path, res.Err, time.Since(start))
	if res.Err != nil {
		r.log.Error("apply failed; haproxy keeps its last good config", "err", res.Err, "generation", gen)
	} else if res.Path != applyUnchanged {
		r.log.Info("applied", "path", res.Path, "generation", gen, "duration_ms", st.DurationMS)
	}
	return res
}

func (r *reconciler) install(ctx context.Context, out []byte, reload bool) result {
	r.mu.Lock()
	same, running := bytes.Equal(out, r.installed), r.running
	prev := r.installed
	r.mu.Unlock()
	if same {
		return result{Path: applyUnchanged}
	}
	next := parseConfig(out)
	r.mu.Lock()
	r.forced = next.forced
	r.mu.Unlock()
	var runtimeErr error
	if running && prev != nil && r.dial != nil {
		if r.installedCfg == nil {
			p := parseConfig(prev)
			r.installedCfg = &p
		}
		res, ok := r.installRuntime(ctx, *r.installedCfg, next, out)
		if ok {
			return res
		}
		runtimeErr = res.Err
	}
	if !reload && runtimeErr == nil {
		return result{deferred: true}
	}
	res := r.installReload(ctx, out, prev, running)
	if runtimeErr != nil {
		res.runtimeErr = runtimeErr
		if res.Err == nil {
			res.Path = applyFallback
			r.log.Warn("runtime API change failed; applied by a reload instead", "err", runtimeErr)
		}
	}
	return res
}

// installRuntime applies a change that touches only servers through the runtime API and
// rewrites the file without a reload. It reports false when the change needs a reload: the
// skeleton changed, a touched backend cannot take dynamic servers, or a command failed (then
// res.Err says which).
func (r *reconciler) installRuntime(ctx context.Context, prev, next parsedConfig, out []byte) (result, bool) {
	if prev.skeleton != next.skeleton {
		return result{}, false
	}
	changes := diffServers(prev, next)
	for _, c := range changes {
		if _, forced := next.forced[c.Backend]; forced {
			return result{}, false
		}
		if c.New != nil && r.drains[c.Backend+"/"+c.New.Name] != nil {
			return result{}, false // re-registered while draining: a reload sorts it out
		}
	}
	if r.rt == nil {
		rt, err := r.dial(ctx)
		if err != nil {
			return result{Err: err}, false
		}
		r.rt = rt
	}
	// The file first: if clbd dies between the two, a restart re-applies from the file.
	if err := atomicfile.Write(r.output, out, 0o644); err != nil {
		return result{Err: err}, false
	}
	drains, err := runtimeApply(r.rt, changes, next.defaults, r.drainFor)
	if err != nil {
		r.rt = nil // reconnect next time, in case the socket went away
		return result{Err: err}, false
	}
	r.installedOK(out, &next)
	return result{Path: applyRuntime, drains: drains}, true
}

// installReload is the full path: haproxy -c on a temp file, atomic install, reload.
func (r *reconciler) installReload(ctx context.Context, out, prev []byte, running bool) result {
	tmp, err := atomicfile.WriteTemp(r.output, out, 0o644)
	if err != nil {
		return result{Err: err}
	}
	if err := haproxy.Check(ctx, r.bin, tmp); err != nil {
		os.Remove(tmp)
		if prev != nil {
			// The runtime path may have written the file already: put the good one back.
			if werr := atomicfile.Write(r.output, prev, 0o644); werr != nil {
				r.log.Error("restore last-known-good config", "err", werr)
			}
		}
		return result{Err: fmt.Errorf("haproxy refused the new config: %w", err)}
	}
	if err := atomicfile.Install(tmp, r.output); err != nil {
		return result{Err: err}
	}
	path := applyInstalled
	if running && r.reloader != nil {
		path = applyReload
		r.saveServerState(ctx)
		if err := r.reloader.Reload(ctx); err != nil {
			return result{Path: path, Err: r.restore(prev, err)}
		}
		r.endDrains(nil)
	}
	r.installedOK(out, nil)
	return result{Path: path}
}

// installedOK records out as the config haproxy runs (parsed, when the caller has it) and
// keeps a last-known-good copy of it.
func (r *reconciler) installedOK(out []byte, parsed *parsedConfig) {
	r.mu.Lock()
	r.installed = out
	r.mu.Unlock()
	r.installedCfg = parsed
	if err := atomicfile.Write(r.lastGood, out, 0o600); err != nil {
		r.log.Warn("save last-known-good config", "path", r.lastGood, "err", err)
	}
}

// saveServerState dumps the servers' state for the next worker; without it, a reload would
// forget which members are down or draining. Best effort: a reload without it still works.
func (r *reconciler) saveServerState(ctx context.Context) {
	if r.stateFile == "" || r.dial == nil {
		return
	}
	if r.rt == nil {
		rt, err := r.dial(ctx)
		if err != nil {
			r.log.Warn("save server state before reload", "err", err)
			return
		}
		r.rt = rt
	}
	err := dumpServerState(r.rt, func(b []byte) error { return atomicfile.Write(r.stateFile, b, 0o644) })
	if err != nil {
		r.rt = nil
		r.log.Warn("save server state before reload", "err", err)
	}
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

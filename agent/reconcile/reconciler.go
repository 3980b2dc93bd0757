// Package reconcile is the one writer: the only code that renders haproxy.cfg, installs it,
// reloads haproxy and talks to haproxy's runtime socket. Fronts (the JSON API, and any other
// API) change the membership or the definitions, then ask for an apply with Trigger and wait
// on the channel it returns; they never import this package, they see it through an interface
// of their own.
//
// One apply: render (template + desired state, see Desired) → skip when the bytes are
// unchanged → when only servers changed and haproxy runs with an admin socket, apply through
// the runtime API (no reload) → otherwise haproxy -c on a temp file, atomic install, reload →
// keep a last-known-good copy; on a failure restore it and retry with backoff.
package reconcile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"clb/agent/config"
	"clb/internal/atomicfile"
	"clb/internal/haproxy"
	"clb/internal/render"
	"clb/internal/stats"
	"clb/internal/store"
)

// Reloader makes haproxy load the config file that was just installed.
type Reloader interface {
	Reload(ctx context.Context) error
}

// Apply paths, as reported in /v1/status, metrics and logs.
const (
	PathUnchanged = "unchanged" // rendered bytes equal the installed config: no write, no reload
	PathRuntime   = "runtime"   // only servers changed: runtime API, file rewritten, no reload
	PathReload    = "reload"
	PathFallback  = "runtime-failed-reload" // a runtime command failed; a reload applied it
	PathInstalled = "installed"             // written, haproxy not reloaded (not running yet)
)

// Members is the membership as the reconciler reads it.
type Members interface {
	// Ready is nil when Snapshot can be rendered: an etcd store not read yet is not.
	Ready() error
	Snapshot() store.Snapshot
}

// StagedMembers is a store whose changes can be applied while they are being written (the
// local state file: store.Store.Staged). The reconciler renders its staged state: a
// registration reaches haproxy while state.json is synced instead of after, and its call is
// still answered only once both are done (the API triggers the apply that answers after the
// write). If the write fails, the store takes the change back and kicks the reconciler, whose
// next apply takes it out of haproxy again; a clbd killed before the write finishes renders
// the state file at start-up and corrects haproxy the same way.
type StagedMembers interface {
	Members
	Staged() store.Snapshot
}

// Observer is told of every apply (metrics); nil is allowed.
type Observer interface {
	ObserveApply(path string, err error, d time.Duration)
}

// Dialer connects to haproxy's admin socket.
type Dialer func(ctx context.Context) (haproxy.RuntimeClient, error)

// Options are what a Reconciler is built from.
type Options struct {
	Logger *slog.Logger
	Store  Members
	// Config is the running config (services, disabled zones); read at every apply.
	Config func() *config.Config
	// Templates is the directory of the user's haproxy.tmpl ("" or no file: built-in).
	Templates string
	// Output is the haproxy.cfg to install; LastGood the last-known-good copy.
	Output, LastGood string
	// Haproxy is the binary for haproxy -c.
	Haproxy string
	// AdminSocket is haproxy's admin socket ("" = none: every change reloads); StateFile its
	// server-state file, dumped before every reload ("" = none).
	AdminSocket, StateFile string
	// Dial connects to AdminSocket; nil means haproxy.DialRuntime (tests wrap it to inject
	// failures).
	Dial Dialer
	// Reloader reloads haproxy; nil: the config is installed but nothing reloads it.
	Reloader Reloader
	// Quiet and MaxWait coalesce changes that need a reload (apply_quiet, apply_max_wait).
	Quiet, MaxWait time.Duration
	// Running: haproxy is up and can be reloaded from the start (external mode). In managed
	// mode the caller says so with SetRunning once haproxy runs.
	Running  bool
	Observer Observer
	// MapDir is the directory of the gateways' map files (default: clb-maps beside Output,
	// config.MapDir); Maps loads them into haproxy (default: SocketMaps on AdminSocket;
	// without an admin socket route changes reload).
	MapDir string
	Maps   MapApplier
	// CertDir holds the https gateways' certificate directories (default: clb-certs beside
	// Output, config.CertDir).
	CertDir string
}

// result is the outcome of one apply; its Err is sent to every caller that waited for it.
type result struct {
	Err  error
	Path string
	// drains started by this apply: callers are answered when they are over.
	drains []haproxy.Drain
	// runtimeErr is the runtime failure a reload made up for.
	runtimeErr error
	// deferred: the change needs a reload, which apply was not allowed to do yet (Run waits
	// for the quiet period first, so that a burst costs one reload).
	deferred bool
}

// ApplyStatus is the last apply, as /v1/status shows it.
// RecentApplies is how many applies Status keeps (those that changed haproxy or failed).
const RecentApplies = 20

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
	ch     chan error
	// member, when set, is a member being unregistered: the answer waits until no server of
	// that name is draining.
	member string
}

// Reconciler is the one writer: the only goroutine that renders, installs haproxy.cfg and
// reloads haproxy. Everything else asks it to apply through Trigger and waits for the answer.
type Reconciler struct {
	log      *slog.Logger
	store    Members
	config   func() *config.Config
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
	dial    Dialer
	metrics Observer
	kick    chan struct{}
	// mapDir holds the gateways' map files; maps loads them at runtime (nil: reload).
	mapDir string
	maps   MapApplier
	// certDir holds the https gateways' certificate directories (certs.go).
	certDir string

	// Owned by the Run goroutine (and by the first apply, before Run starts).
	// slots is which member holds which server slot (slots.go).
	slots *Slots
	rt    haproxy.RuntimeClient
	// drains in progress and the callers waiting for them.
	drains  map[string]*haproxy.Drain
	batches []*drainBatch
	// fileStale: haproxy runs the installed config but writing it to the output failed.
	fileStale bool
	// goodUnsaved is the installed config when its last-known-good copy is not written yet.
	goodUnsaved []byte
	// installedCfg is the installed config, parsed (nil = parse it again).
	installedCfg *haproxy.ParsedConfig
	// layout is which service each backend of the installed config belongs to.
	layout layout
	// loadedMaps are the map contents haproxy is known to run, by path (nil: not known,
	// e.g. after a restart of clbd: checked against haproxy at the next apply).
	loadedMaps map[string][]byte
	// certs are the certificate changes written to the files and not yet known to the
	// running haproxy (runtime API or reload), by certificate path; certsChecked says whether
	// haproxy's certificates were compared with the files since clbd started (certs.go).
	certs        map[string]CertUpdate
	certsChecked bool
	// certWarns are the certificate warnings logged last (logged again when they change).
	certWarns string

	// Guarded by mu: read by Status, Health and the API goroutines.
	mu        sync.Mutex
	requested uint64 // tickets handed out
	applied   uint64 // the last ticket an apply covered successfully
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
	reloadOnly map[string]string
	draining   int
	drainingBy map[string][]string          // service → members draining (setDraining)
	health     map[string]map[string]string // by service, then member

	// stats is the history of haproxy's counters (its own lock; Add from the Run goroutine).
	stats  *stats.History
	recent []ApplyStatus // the last RecentApplies applies that changed something or failed, oldest first
}

// New builds a reconciler; nothing runs until Run (or Apply, for the first apply).
func New(o Options) *Reconciler {
	r := &Reconciler{
		log: o.Logger, store: o.Store, config: o.Config, tmplDir: o.Templates, output: o.Output,
		lastGood: o.LastGood, bin: o.Haproxy, admin: o.AdminSocket, stateFile: o.StateFile,
		reloader: o.Reloader, quiet: o.Quiet, maxWait: o.MaxWait, running: o.Running,
		metrics: o.Observer, kick: make(chan struct{}, 1), dial: o.Dial, slots: NewSlots(),
		stats: stats.New(HealthInterval, StatsWindow), mapDir: o.MapDir, maps: o.Maps,
		certDir: o.CertDir, certs: map[string]CertUpdate{},
	}
	if r.mapDir == "" {
		r.mapDir = config.MapDir(o.Output)
	}
	if r.certDir == "" {
		r.certDir = config.CertDir(o.Output)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.admin == "" {
		r.dial, r.stateFile, r.maps = nil, "", nil
	} else if r.maps == nil {
		r.maps = SocketMaps(r.admin)
	}
	if r.admin != "" && r.dial == nil {
		sock := r.admin
		r.dial = func(ctx context.Context) (haproxy.RuntimeClient, error) { return haproxy.DialRuntime(ctx, sock) }
	}
	return r
}

// drainBatch holds a caller until the drains of the member it unregistered are over.
type drainBatch struct {
	pending map[string]bool
	waiters []waiter
	res     result
}

// Kick asks for an apply without waiting for it: a store's staged change (StagedMembers). It
// never blocks.
func (r *Reconciler) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Trigger asks for an apply that includes every change made before the call, and returns a
// channel that receives its outcome: nil once haproxy runs it, else why it does not (the
// change stays stored and is retried).
func (r *Reconciler) Trigger() <-chan error { return r.TriggerFor("") }

// TriggerFor is Trigger for the unregistration of member: the outcome comes once the member's
// servers are drained and deleted, whichever apply took them out (the change may have been
// rendered by an apply that started before this call).
func (r *Reconciler) TriggerFor(member string) <-chan error {
	r.mu.Lock()
	r.requested++
	w := waiter{ticket: r.requested, ch: make(chan error, 1), member: member}
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
func (r *Reconciler) Run(ctx context.Context) error {
	var retry <-chan time.Time
	var backoff time.Duration
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	healthTick := time.NewTicker(HealthInterval)
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
		r.saveLastGood()
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
func (r *Reconciler) applyOnce(ctx context.Context, reload bool) (uint64, result) {
	r.mu.Lock()
	ticket := r.requested
	r.mu.Unlock()
	return ticket, r.apply(ctx, reload)
}

func (r *Reconciler) coalesce(ctx context.Context) {
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

func (r *Reconciler) finish(ticket uint64, res result) {
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
	if res.Err == nil && ticket > r.applied {
		r.applied = ticket
	}
	r.mu.Unlock()
	for _, d := range res.drains {
		if r.drains == nil {
			r.drains = map[string]*haproxy.Drain{}
		}
		r.drains[d.Key()] = &d
	}
	r.setDraining()
	for _, w := range covered {
		pending := map[string]bool{}
		if w.member != "" && res.Err == nil {
			for key, d := range r.drains {
				if d.Member == w.member {
					pending[key] = true
				}
			}
		}
		if len(pending) == 0 {
			w.ch <- res.Err
			continue
		}
		r.batches = append(r.batches, &drainBatch{pending: pending, waiters: []waiter{w}, res: result{Path: res.Path}})
	}
}

// progressDrains retries `del server` for every draining server and answers the callers whose
// drains are all over.
func (r *Reconciler) progressDrains() {
	now := time.Now()
	for key, d := range r.drains {
		done, err := false, error(nil)
		if r.rt == nil {
			done, err = true, errors.New("runtime API gone")
		} else {
			done, err = haproxy.RetryDrain(r.rt, d, now)
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

func (r *Reconciler) endDrain(key string) {
	delete(r.drains, key)
	rest := r.batches[:0]
	for _, b := range r.batches {
		delete(b.pending, key)
		if len(b.pending) == 0 {
			for _, w := range b.waiters {
				w.ch <- b.res.Err
			}
			continue
		}
		rest = append(rest, b)
	}
	r.batches = rest
}

// endDrains ends every drain: after a reload the new worker no longer has those servers, and
// the old one finishes their requests by itself.
func (r *Reconciler) endDrains(err error) {
	for key := range r.drains {
		r.endDrain(key)
	}
	for _, b := range r.batches { // only reachable if a batch had no drains left to end
		for _, w := range b.waiters {
			w.ch <- err
		}
	}
	r.batches = nil
	r.setDraining()
}

func (r *Reconciler) setDraining() {
	by := map[string][]string{}
	for _, d := range r.drains {
		svc := r.layout.service[d.Backend]
		if svc != "" && d.Member != "" && !slices.Contains(by[svc], d.Member) {
			by[svc] = append(by[svc], d.Member)
		}
	}
	for _, ms := range by {
		slices.Sort(ms)
	}
	r.mu.Lock()
	r.draining = len(r.drains)
	r.drainingBy = by
	r.mu.Unlock()
}

// Draining lists, by service, the members that left and whose servers are still draining.
func (r *Reconciler) Draining() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drainingBy
}

// Status is the reconciler's part of /v1/status.
type Status struct {
	LastApply ApplyStatus
	// Recent are the last applies that changed haproxy or failed, newest first.
	Recent []ApplyStatus
	// Pending counts the changes asked for (Trigger) since the last successful apply: stored,
	// not yet running in haproxy.
	Pending  int
	Reloads  uint64
	Failures uint64
	// ReloadOnly lists the backends whose changes always reload, and why.
	ReloadOnly map[string]string
	Draining   int
	// RuntimeFallbacks counts runtime changes that failed and were applied by a reload;
	// LastRuntimeError is the last such failure.
	RuntimeFallbacks uint64
	LastRuntimeError string
	AdminSocket      string
}

// Status copies the reconciler's state under its lock.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	recent := slices.Clone(r.recent)
	slices.Reverse(recent)
	return Status{
		LastApply: r.status, Recent: recent, Pending: int(r.requested - r.applied), Reloads: r.reloads, Failures: r.failures,
		ReloadOnly: r.reloadOnly, Draining: r.draining, RuntimeFallbacks: r.fallbacks,
		LastRuntimeError: r.runtimeErr, AdminSocket: r.admin,
	}
}

// LastGood is the path of the last-known-good config.
func (r *Reconciler) LastGood() string { return r.lastGood }

// SetRunning says whether haproxy runs (and can be reloaded and reached on its admin socket).
func (r *Reconciler) SetRunning(v bool) {
	r.mu.Lock()
	r.running = v
	r.mu.Unlock()
}

// LoadInstalled remembers what the output file holds at start, so an unchanged render after a
// restart of clbd neither writes nor reloads.
//
// It also learns from it which member holds which server slot: the mapping lives in the
// config haproxy runs, so a restart keeps it.
func (r *Reconciler) LoadInstalled() {
	data, err := os.ReadFile(r.output)
	if err == nil {
		r.mu.Lock()
		r.installed = data
		r.mu.Unlock()
		p := haproxy.ParseConfig(data)
		r.installedCfg = &p
		r.slots = NewSlots()
		r.slots.Learn(p, r.config())
	}
}

// busySlot reports a slot of service that must not take a new member yet: it still drains,
// or haproxy still runs it with a member (the apply that frees it has not happened).
func (r *Reconciler) busySlot(service, slot string) bool {
	for _, d := range r.drains {
		if d.Name == slot && r.layout.service[d.Backend] == service {
			return true
		}
	}
	if r.installedCfg == nil {
		return false
	}
	for _, backend := range r.layout.order[service] {
		if srv, ok := r.installedCfg.Servers[backend][slot]; ok && !slices.Contains(srv.Args, "disabled") {
			return true
		}
	}
	return false
}

// render produces the config for the current config, template and state.
func (r *Reconciler) render() ([]byte, render.Data, uint64, error) {
	tmpl, source, err := render.Load(r.tmplDir)
	if err != nil {
		return nil, render.Data{}, 0, fmt.Errorf("template %s: %w", source, err)
	}
	if err := r.store.Ready(); err != nil {
		// Not read yet (etcd unreachable since start): an empty membership would drain
		// every member. haproxy keeps what it runs.
		return nil, render.Data{}, 0, err
	}
	var snap store.Snapshot
	if st, ok := r.store.(StagedMembers); ok {
		snap = st.Staged()
	} else {
		snap = r.store.Snapshot()
	}
	cfg := r.config()
	r.slots.Assign(cfg, snap, r.busySlot)
	data := Desired(cfg, snap, r.slots, render.Data{TemplateSource: source, AdminSocket: r.admin, ServerStateFile: r.stateFile})
	data.GatewayConfig, data.Maps, data.Certs, err = Gateways(cfg, r.mapDir, r.certDir)
	if err != nil {
		return nil, render.Data{}, 0, err
	}
	out, err := render.Render(tmpl, data)
	return out, data, snap.Generation, err
}

// apply runs the pipeline once: render → skip if unchanged → haproxy -c on a temp file →
// atomic install → reload → keep a last-known-good copy; on failure restore it.
//
// With reload false, a change that would need a reload is left alone and reported deferred.
func (r *Reconciler) apply(ctx context.Context, reload bool) result {
	start := time.Now()
	out, data, gen, err := r.render()
	res := result{Err: err}
	if err == nil {
		res = r.install(ctx, out, data, reload)
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
	if (res.Path == PathReload || res.Path == PathFallback) && res.Err == nil {
		r.reloads++
	}
	if res.runtimeErr != nil {
		st.RuntimeError = res.runtimeErr.Error()
		r.fallbacks++
		r.runtimeErr = st.RuntimeError
	}
	st.Checksum = checksum(r.installed)
	r.status = st
	if res.Path != PathUnchanged || res.Err != nil {
		r.recent = append(r.recent, st)
		if len(r.recent) > RecentApplies {
			r.recent = slices.Delete(r.recent, 0, len(r.recent)-RecentApplies)
		}
	}
	r.mu.Unlock()
	if r.metrics != nil {
		r.metrics.ObserveApply(res.Path, res.Err, time.Since(start))
	}
	if res.Err != nil {
		r.log.Error("apply failed; haproxy keeps its last good config", "err", res.Err, "generation", gen)
	} else if res.Path != PathUnchanged {
		r.log.Info("applied", "path", res.Path, "generation", gen, "duration_ms", st.DurationMS)
	}
	return res
}

// Apply runs one apply now, reload allowed: the first apply at start-up, before Run.
func (r *Reconciler) Apply(ctx context.Context) error {
	if r.checkLive(ctx) {
		// haproxy does not run what the file says: a reload makes it run the file.
		r.log.Warn("haproxy's servers differ from the installed config; reloading it")
		r.mu.Lock()
		r.installed = nil
		r.mu.Unlock()
	}
	err := r.apply(ctx, true).Err
	r.saveLastGood()
	return err
}

// checkLive reports whether haproxy, running with an admin socket, holds a server slot other
// than the installed config says (free, or at another address): clbd died between the runtime
// commands and writing the file, or the admin socket was used by hand.
func (r *Reconciler) checkLive(ctx context.Context) bool {
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	if r.dial == nil || !running || r.installedCfg == nil {
		return false
	}
	rt, err := r.runtime(ctx)
	if err != nil {
		return false
	}
	out, err := rt.ExecuteRaw("show servers state")
	if err != nil {
		r.rt = nil
		return false
	}
	live := haproxy.ParseServersState(strings.Join(out, ""))
	for backend, servers := range r.installedCfg.Servers {
		for name, srv := range servers {
			st, ok := live[backend][name]
			if !ok || slotIndex(name) == 0 {
				continue
			}
			free := slices.Contains(srv.Args, "disabled")
			host := srv.Addr
			if i := strings.LastIndexByte(host, ':'); i > 0 {
				host = strings.Trim(host[:i], "[]")
			}
			if _, err := netip.ParseAddr(host); err != nil && !free {
				continue // a host name: haproxy shows what it resolved to
			}
			if free && st.Health != haproxy.HealthMaint || !free && st.Address != host {
				return true
			}
		}
	}
	return false
}

func (r *Reconciler) install(ctx context.Context, out []byte, data render.Data, reload bool) result {
	r.mu.Lock()
	same, running := bytes.Equal(out, r.installed), r.running
	prev := r.installed
	r.mu.Unlock()
	// The map files first: haproxy -c, a reload, and a clbd started again read them.
	if _, err := WriteMaps(data.Maps); err != nil {
		return result{Err: err}
	}
	changed := r.changedMaps(data.Maps)
	updates, err := WriteCerts(data.Certs)
	r.pendCerts(updates)
	if err != nil {
		return result{Err: err}
	}
	if same && r.fileStale {
		// haproxy runs out, the file is behind (a write failed): write it again.
		if err := r.writeOutput(out); err != nil {
			return result{Err: err}
		}
	}
	if same {
		// After a restart of clbd, the file it found: learn its layout for drains and health.
		if r.installedCfg == nil {
			p := haproxy.ParseConfig(out)
			r.installedCfg = &p
		}
		if r.layout.service == nil {
			r.layout = newLayout(*r.installedCfg, data)
		}
		// Certificates changed in the files: through the runtime API when haproxy runs (an
		// error, or a difference found by the first check after clbd started, takes a reload).
		nCerts, certErr := r.applyCerts(ctx, data, running)
		if certErr != nil {
			if !reload {
				return result{deferred: true}
			}
			r.log.Warn("runtime certificate change failed; applying it by a reload instead", "err", certErr)
			res := r.reloadWithMaps(ctx, out, prev, running, r.installedCfg, r.layout, data.Maps)
			res.runtimeErr = certErr
			if res.Err == nil {
				res.Path = PathFallback
			}
			return res
		}
		if len(changed) == 0 {
			if nCerts > 0 {
				return result{Path: PathRuntimeCerts}
			}
			return result{Path: PathUnchanged}
		}
		return r.installMaps(ctx, out, prev, data, changed, running, reload)
	}
	next := haproxy.ParseConfig(out)
	lay := newLayout(next, data)
	var runtimeErr error
	if running && prev != nil && r.dial != nil {
		if r.installedCfg == nil {
			p := haproxy.ParseConfig(prev)
			r.installedCfg = &p
		}
		res, ok := r.installRuntime(ctx, *r.installedCfg, next, lay, out)
		if ok && res.Err == nil {
			// haproxy.cfg changed in servers only: certificates go through the runtime too.
			if _, err := r.applyCerts(ctx, data, running); err != nil {
				ok, res = false, result{Err: err}
			}
		}
		if ok && (res.Err != nil || len(changed) == 0 || r.maps == nil) {
			return res
		}
		if ok {
			_, err := r.applyMaps(ctx, data.Maps, changed)
			if err == nil {
				return res
			}
			if ctx.Err() != nil {
				return result{Err: err, drains: res.drains} // shutting down: no reload now
			}
			runtimeErr = err
		} else {
			runtimeErr = res.Err
		}
	}
	if !reload && runtimeErr == nil {
		return result{deferred: true}
	}
	res := r.reloadWithMaps(ctx, out, prev, running, &next, lay, data.Maps)
	if runtimeErr != nil {
		res.runtimeErr = runtimeErr
		if res.Err == nil {
			res.Path = PathFallback
			r.log.Warn("runtime API change failed; applied by a reload instead", "err", runtimeErr)
		}
	}
	return res
}

// installMaps applies a change of map contents only (haproxy.cfg unchanged): through the
// runtime API, map by map; any failure falls back to a reload, which reads the files already
// written. Without an admin socket the change reloads.
func (r *Reconciler) installMaps(ctx context.Context, out, prev []byte, data render.Data, changed []string, running, reload bool) result {
	if !running {
		r.loadedMaps = nil // haproxy reads the files when it starts; checked once it runs
		return result{Path: PathUnchanged}
	}
	if r.maps == nil {
		if r.loadedMaps == nil {
			// Not known (clbd started): no way to ask haproxy, which read the files at its
			// last start or reload.
			r.recordMaps(data.Maps)
			return result{Path: PathUnchanged}
		}
		if !reload {
			return result{deferred: true}
		}
		return r.reloadWithMaps(ctx, out, prev, running, r.installedCfg, r.layout, data.Maps)
	}
	if r.loadedMaps == nil {
		r.loadedMaps = map[string][]byte{}
	}
	n, err := r.applyMaps(ctx, data.Maps, changed)
	switch {
	case err == nil && n == 0:
		return result{Path: PathUnchanged}
	case err == nil:
		return result{Path: PathRuntimeMaps}
	case ctx.Err() != nil:
		return result{Err: err} // shutting down: no reload now; the next clbd checks the maps
	}
	r.log.Warn("runtime map change failed; applying it by a reload instead", "err", err)
	res := r.reloadWithMaps(ctx, out, prev, running, r.installedCfg, r.layout, data.Maps)
	res.runtimeErr = err
	if res.Err == nil {
		res.Path = PathFallback
	}
	return res
}

// reloadWithMaps is installReload for a config with gateways: after the reload, haproxy's
// maps are checked against the files (and repaired at runtime when they differ); map files
// no gateway reads any more are removed. If the reload fails, the map files haproxy runs
// are put back.
func (r *Reconciler) reloadWithMaps(ctx context.Context, out, prev []byte, running bool, next *haproxy.ParsedConfig, lay layout, files map[string]render.MapFile) result {
	res := r.installReload(ctx, out, prev, running, next, lay)
	switch {
	case res.Err != nil:
		r.restoreMaps()
	case res.Path == PathReload:
		if err := r.verifyMaps(ctx, files); err != nil {
			r.log.Error("haproxy's maps differ from the map files after a reload", "err", err)
		}
		r.removeStaleMaps(files)
	default:
		r.loadedMaps = nil // installed, haproxy not running: checked once it runs
	}
	return res
}

// recordMaps records files as what haproxy runs.
func (r *Reconciler) recordMaps(files map[string]render.MapFile) {
	r.loadedMaps = make(map[string][]byte, len(files))
	for path, f := range files {
		r.loadedMaps[path] = f.Bytes
	}
}

// restoreMaps puts back the map files haproxy is known to run, after a failed check or
// reload, so that the files on disk are again those of the config haproxy runs.
func (r *Reconciler) restoreMaps() {
	for path, b := range r.loadedMaps {
		if err := atomicfile.Write(path, b, 0o644); err != nil {
			r.log.Error("restore map file", "path", path, "err", err)
		}
	}
}

// installRuntime applies a change that touches only servers through the runtime API and
// rewrites the file without a reload. It reports false when the change needs a reload: the
// skeleton changed, a touched backend cannot take dynamic servers, or a command failed (then
// res.Err says which).
func (r *Reconciler) installRuntime(ctx context.Context, prev, next haproxy.ParsedConfig, lay layout, out []byte) (result, bool) {
	if prev.Skeleton != next.Skeleton {
		return result{}, false
	}
	changes := haproxy.DiffServers(prev, next)
	for _, c := range changes {
		slotted := lay.slotted[c.Backend]
		if _, reloadOnly := next.ReloadOnly[c.Backend]; reloadOnly && !slotted {
			return result{}, false // dynamic servers refused there
		}
		if slotted && c.Old == nil {
			return result{}, false // the pool grew: new static servers take a reload
		}
		if slotted && next.Balance[c.Backend] == "static-rr" && c.Old != nil && c.New != nil && c.Old.Weight() != c.New.Weight() {
			return result{}, false // static-rr ignores weights set at runtime
		}
		if c.New != nil && r.drains[c.Backend+"/"+c.New.Name] != nil {
			return result{}, false // re-registered while draining: a reload sorts it out
		}
	}
	rt, err := r.runtime(ctx)
	if err != nil {
		return result{Err: err}, false
	}
	// The commands first, all on one connection, then the file: haproxy routes the change
	// one synced write earlier, and the call is answered after both, so readers of
	// haproxy.cfg see a change once its call is answered. If clbd dies between the two, the
	// state store has the change already and a restart finds haproxy ahead of the file
	// (checkLive) and reloads it from a fresh render. If the commands fail, the fallback
	// reload installs the file.
	b := haproxy.NewBatch(rt)
	drains, err := haproxy.ApplyServers(b, changes, next.Defaults, r.drainTimeout(lay))
	if err == nil {
		err = b.Flush()
	}
	if err != nil {
		r.rt = nil // reconnect next time, in case the socket went away
		return result{Err: err}, false
	}
	r.installedOK(out, &next, lay)
	if err := r.writeOutput(out); err != nil {
		// haproxy runs the change but the file does not hold it. The apply is reported
		// failed and retried; until a write succeeds, every apply tries the file again.
		return result{Path: PathRuntime, drains: drains, Err: err}, true
	}
	return result{Path: PathRuntime, drains: drains}, true
}

// writeOutput writes the config haproxy runs to the output file, and remembers whether the
// file is behind haproxy (fileStale) when the write fails.
func (r *Reconciler) writeOutput(out []byte) error {
	if err := atomicfile.Write(r.output, out, 0o644); err != nil {
		r.fileStale = true
		return fmt.Errorf("write %s: %w", r.output, err)
	}
	r.fileStale = false
	return nil
}

// installReload is the full path: haproxy -c on a temp file, atomic install, reload.
func (r *Reconciler) installReload(ctx context.Context, out, prev []byte, running bool, next *haproxy.ParsedConfig, lay layout) result {
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
	r.fileStale = false
	path := PathInstalled
	if running && r.reloader != nil {
		path = PathReload
		r.saveServerState(ctx)
		if err := r.reloader.Reload(ctx); err != nil {
			return result{Path: path, Err: r.restore(prev, err)}
		}
		r.endDrains(nil)
	}
	// haproxy read the certificate files (reloaded, or it reads them when it starts).
	r.certsLoaded(!running || r.reloader != nil)
	r.installedOK(out, next, lay)
	return result{Path: path}
}

// installedOK records out as the config haproxy runs, installed in the output file, with its
// parsed form and layout, and keeps a last-known-good copy of it.
func (r *Reconciler) installedOK(out []byte, parsed *haproxy.ParsedConfig, lay layout) {
	reloadOnly := map[string]string{} // server slots change at runtime whatever the backend
	for backend, why := range parsed.ReloadOnly {
		if !lay.slotted[backend] {
			reloadOnly[backend] = why
		}
	}
	r.mu.Lock()
	r.installed = out
	r.reloadOnly = reloadOnly
	r.mu.Unlock()
	r.installedCfg, r.layout = parsed, lay
	r.goodUnsaved = out
}

// saveLastGood writes the last-known-good copy of the config installed last, if it has not
// been written yet: after the callers of the apply are answered (Run) or at the end of Apply,
// so that it is not on the path of a registration. It is read only at start-up, when the
// output is missing, and it is always a config haproxy ran.
func (r *Reconciler) saveLastGood() {
	if r.goodUnsaved == nil {
		return
	}
	if err := atomicfile.Write(r.lastGood, r.goodUnsaved, 0o600); err != nil {
		r.log.Warn("save last-known-good config", "path", r.lastGood, "err", err)
	}
	r.goodUnsaved = nil
}

// saveServerState dumps the servers' state for the next worker; without it, a reload would
// forget which members are down or draining. Best effort: a reload without it still works.
func (r *Reconciler) saveServerState(ctx context.Context) {
	if r.stateFile == "" || r.dial == nil {
		return
	}
	rt, err := r.runtime(ctx)
	if err != nil {
		r.log.Warn("save server state before reload", "err", err)
		return
	}
	err = haproxy.DumpServerState(rt, func(b []byte) error { return atomicfile.Write(r.stateFile, b, 0o644) })
	if err != nil {
		r.rt = nil
		r.log.Warn("save server state before reload", "err", err)
	}
}

// restore puts the last-known-good config back after a failed reload, so that the file on
// disk is again the one haproxy runs and a later start or reload does not pick up the bad one.
func (r *Reconciler) restore(prev []byte, reloadErr error) error {
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

// runtime returns the admin-socket connection, dialling it when there is none. Whoever sees a
// command fail on it sets r.rt to nil, so the next call dials again.
func (r *Reconciler) runtime(ctx context.Context) (haproxy.RuntimeClient, error) {
	if r.rt != nil {
		return r.rt, nil
	}
	rt, err := r.dial(ctx)
	if err != nil {
		return nil, err
	}
	r.rt = rt
	return rt, nil
}

// Package agent is clbd, the daemon beside haproxy, as one composition root: it opens the
// membership store and the definitions, builds the one reconciler (package reconcile) and the
// fronts over them (package api, the native JSON API), and runs them all under one errgroup,
// with the file watcher, lease expiry and, in managed mode, the haproxy it supervises.
//
// Imports go one way: agent → api, reconcile, defs → config → model. The fronts never import
// the reconciler (they see it as the small interfaces they define), and nothing below agent/
// imports agent (imports_test.go enforces both).
//
// It runs haproxy one of two ways. External: write the -o file and run --reload-cmd, the 2010
// way. Managed: clbd starts haproxy itself in master-worker mode, with its config and sockets
// in the state dir, and reloads it through the master socket.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"clb/agent/api"
	"clb/agent/autoscale"
	"clb/agent/awsapi"
	"clb/agent/config"
	"clb/agent/console"
	"clb/agent/defs"
	"clb/agent/eru"
	"clb/agent/reconcile"
	"clb/internal/atomicfile"
	"clb/internal/etcdstore"
	"clb/internal/gateway"
	"clb/internal/haproxy"
	"clb/internal/sdnotify"
	"clb/internal/statelock"
)

// Version is clbd's version, set at build time with -ldflags "-X clb/agent.Version=...".
var Version = "dev"

// Options are what the command line passes besides the config.
type Options struct {
	// ConfigPath is the config file to watch and hot-reload, empty for none.
	ConfigPath string
	// Reload re-reads the config file with the command line's flags laid over it again.
	Reload func() (*config.Config, error)
	Logger *slog.Logger
	// Ready, if set, receives the API's address once the API is listening and haproxy has its
	// config (one send; give it a buffer of one or read it).
	Ready chan<- net.Addr

	// wrapRuntime lets tests wrap the runtime API client to inject failures; wrapMaps the
	// runtime map loader.
	wrapRuntime func(reconcile.Dialer) reconcile.Dialer
	wrapMaps    func(reconcile.MapApplier) reconcile.MapApplier
}

// Agent is a running clbd.
type Agent struct {
	opts  Options
	log   *slog.Logger
	cfg   atomic.Pointer[config.Config]
	store memberStore
	// shared is the etcd store when the membership is shared with other nodes, else nil.
	shared  *etcdstore.Store
	sec     security
	rec     *reconcile.Reconciler
	api     *api.Server
	aws     *awsapi.Server
	console *console.Console
	started time.Time
	version string
	restart atomic.Bool
	metrics *metrics
	// scaler runs the Auto Scaling groups; cpu holds what members report of their CPU.
	scaler *autoscale.Controller
	cpu    *cpuReports

	// mu guards what Restart reads and Run writes.
	mu      sync.Mutex
	cancel  context.CancelFunc
	managed *haproxy.Managed

	// defs are the API's service and gateway definitions and disabled zones; fileServices
	// and fileGateways the config file's. setServices merges them into cfg under cfgMu.
	defs         *defs.Defs
	fileServices map[string]config.Service
	// fileGateways are the config file's gateways (never nil once set).
	fileGateways map[string]gateway.Gateway
	cfgMu        sync.Mutex
	// fileGroups are the config file's launch configurations and groups (groups.go).
	fileGroups *fileGroups
}

// New checks cfg and prepares an agent; nothing runs until Run.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	c := *cfg
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	a := &Agent{opts: opts, log: opts.Logger}
	a.cfg.Store(&c)
	return a, nil
}

func (a *Agent) config() *config.Config { return a.cfg.Load() }

// Restart stops the agent like a cancel, but leaves a managed haproxy running so that the
// process that replaces this one (see Reexec) adopts it without a gap in traffic. It may be
// called at any time, from any goroutine, also before or while Run starts.
func (a *Agent) Restart() {
	a.restart.Store(true)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.managed != nil {
		a.managed.Detach()
	}
	if a.cancel != nil {
		a.cancel()
	}
}

// Restarting reports whether Run ended because of Restart.
func (a *Agent) Restarting() bool { return a.restart.Load() }

// Run serves until ctx ends. Everything runs under one errgroup; the first failure stops all.
// A Restart at any point, start-up included, ends it with nil: the replacing process starts
// afresh.
func (a *Agent) Run(ctx context.Context) error {
	err := a.run(ctx)
	if err != nil && a.restart.Load() && ctx.Err() == nil {
		a.log.Info("start-up cut short by a restart", "err", err)
		return nil
	}
	return err
}

func (a *Agent) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.cancel = cancel
	a.mu.Unlock()
	if a.restart.Load() { // Restart came before Run
		return nil
	}
	cfg := a.config()
	a.started = time.Now()
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	lock, err := statelock.Acquire(cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := a.openStore(ctx, cfg); err != nil {
		return err
	}
	if a.shared != nil {
		defer a.shared.Close()
	}
	if err := a.setServices(cfg.Services, fileGatewaysOf(cfg)); err != nil {
		return fmt.Errorf("services defined through the API: %w", err)
	}
	cfg = a.config()
	if err := a.setupSecurity(cfg); err != nil {
		return err
	}
	tlsConfig, err := serverTLSConfig(cfg, a.log)
	if err != nil {
		return err
	}
	if v, err := haproxy.Version(ctx, cfg.Haproxy); err != nil {
		return fmt.Errorf("haproxy binary %q: %w", cfg.Haproxy, err)
	} else {
		a.version = v
	}
	if err := a.newReconciler(cfg); err != nil {
		return err
	}
	a.cpu = newCPUReports()
	a.scaler = a.newAutoscale()
	if err := a.scaler.Load(); err != nil {
		return err
	}
	if err := a.rec.Apply(ctx); err != nil {
		if ferr := a.fallBackToLastGood(); ferr != nil {
			return fmt.Errorf("first apply: %w; %w", err, ferr)
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	a.api = a.newAPI()
	var awsLn net.Listener
	if cfg.AWSListen != "" {
		if awsLn, err = net.Listen("tcp", cfg.AWSListen); err != nil {
			ln.Close()
			return fmt.Errorf("aws_listen: %w", err)
		}
		if tlsConfig != nil {
			awsLn = tls.NewListener(awsLn, tlsConfig)
		}
	}
	var eruLn net.Listener
	if cfg.EruListen != "" {
		if eruLn, err = net.Listen("tcp", cfg.EruListen); err != nil {
			ln.Close()
			if awsLn != nil {
				awsLn.Close()
			}
			return fmt.Errorf("eru_listen: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           a.newHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}

	g, ctx := errgroup.WithContext(ctx)
	if m := a.managedHaproxy(); m != nil {
		g.Go(func() error { return m.Run(ctx) })
		if err := m.WaitReady(ctx); err != nil {
			ln.Close()
			cancel()
			return errors.Join(fmt.Errorf("start haproxy: %w", err), g.Wait())
		}
		a.rec.SetRunning(true)
		a.log.Info("haproxy running", "pid", m.Pid(), "path", cfg.Output)
	}
	g.Go(func() error { return a.rec.Run(ctx) })
	g.Go(func() error { return a.expireLeases(ctx) })
	if a.shared != nil {
		g.Go(func() error { return a.shared.Run(ctx) })
		g.Go(func() error { return a.followStore(ctx) })
	}
	g.Go(func() error { return a.watch(ctx) })
	g.Go(func() error { return a.scaler.Run(ctx) })
	serve(ctx, g, srv, ln, "API")
	if awsLn != nil {
		a.serveAWS(ctx, g, awsLn, srv)
	}
	if eruLn != nil {
		a.serveEru(ctx, g, eruLn, srv)
	}
	a.log.Info("clbd listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "managed", cfg.Managed, "output", cfg.Output, "state_dir", cfg.StateDir)
	a.notifySystemd(sdnotify.Ready)
	if a.opts.Ready != nil {
		select {
		case a.opts.Ready <- ln.Addr():
		case <-ctx.Done():
		}
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// newReconciler builds the one writer for cfg, and in managed mode the haproxy it reloads.
func (a *Agent) newReconciler(cfg *config.Config) error {
	o := reconcile.Options{
		Logger: a.log, Store: a.store, Config: a.config, Templates: cfg.Templates, Output: cfg.Output,
		LastGood: lastGoodPath(cfg), Haproxy: cfg.Haproxy, AdminSocket: cfg.AdminSocket(),
		StateFile: cfg.ServerStateFile(), Quiet: cfg.ApplyQuiet, MaxWait: cfg.ApplyMaxWait,
	}
	if o.AdminSocket != "" {
		sock := o.AdminSocket
		o.Dial = func(ctx context.Context) (haproxy.RuntimeClient, error) { return haproxy.DialRuntime(ctx, sock) }
		if a.opts.wrapRuntime != nil {
			o.Dial = a.opts.wrapRuntime(o.Dial)
		}
		o.Maps = reconcile.SocketMaps(sock)
		if a.opts.wrapMaps != nil {
			o.Maps = a.opts.wrapMaps(o.Maps)
		}
		// An empty state (format version line only) until the first dump, so haproxy does not
		// warn that the file is missing.
		if _, err := os.Stat(o.StateFile); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(o.StateFile, []byte("1\n"), 0o644); err != nil {
				return err
			}
		}
	}
	a.metrics = newMetrics(a)
	o.Observer = a.metrics
	switch {
	case cfg.Managed:
		m := haproxy.New(haproxy.Options{Binary: cfg.Haproxy, ConfigPath: cfg.Output, Dir: cfg.StateDir, Logger: a.log.With("component", "haproxy")})
		a.mu.Lock()
		a.managed = m
		if a.restart.Load() {
			m.Detach()
		}
		a.mu.Unlock()
		o.Reloader = m
	case cfg.ReloadCmd != "":
		r, err := reconcile.NewCommandReloader(cfg.ReloadCmd, cfg.ReloadTimeout)
		if err != nil {
			return err
		}
		o.Reloader = r
	}
	// External mode: haproxy is someone else's and assumed to be running.
	o.Running = !cfg.Managed && (cfg.ReloadCmd != "" || cfg.RuntimeSocket != "")
	a.rec = reconcile.New(o)
	a.rec.LoadInstalled()
	if ls, ok := a.store.(localStore); ok {
		// Changes reach haproxy while state.json is synced (reconcile.StagedMembers).
		ls.SetOnStage(a.rec.Kick)
	}
	return nil
}

func (a *Agent) managedHaproxy() *haproxy.Managed {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.managed
}

// newAPI builds the native JSON API over the core.
func (a *Agent) newAPI() *api.Server {
	return api.New(api.Deps{
		Logger: a.log, Config: a.config, Members: a.store, Applier: a.rec, Definitions: a, Gateways: a, Instances: a,
		Status: agentStatus{a}, Stats: a.rec.Stats(), Verifier: a.sec.verifier, Limiter: a.sec.limiter,
		Metrics: a.metrics.handler(), OnChange: a.metrics.registration, Groups: a.scaler, OnCPU: a.cpu.report,
	})
}

// serveAWS serves the AWS ELB front on ln (aws_listen) with the native API's server settings,
// until ctx ends.
func (a *Agent) serveAWS(ctx context.Context, g *errgroup.Group, ln net.Listener, like *http.Server) {
	a.aws = awsapi.New(awsapi.Deps{
		Logger: a.log.With("front", "aws"), Config: a.config, Members: a.store, Applier: a.rec, Definitions: a,
		Status: agentStatus{a}, Keys: a.sec.keys, Limiter: a.sec.limiter, Scaling: a.scaler,
	})
	srv := &http.Server{Handler: a.aws, ReadHeaderTimeout: like.ReadHeaderTimeout, ReadTimeout: like.ReadTimeout,
		WriteTimeout: like.WriteTimeout, IdleTimeout: like.IdleTimeout, ErrorLog: like.ErrorLog}
	serve(ctx, g, srv, ln, "AWS API")
	a.log.Info("AWS ELB API listening", "addr", ln.Addr().String())
}

// serveEru serves the Eru elb adapter on ln (eru_listen), plain HTTP (Eru's clients speak
// nothing else), with the native API's server settings, until ctx ends.
func (a *Agent) serveEru(ctx context.Context, g *errgroup.Group, ln net.Listener, like *http.Server) {
	h := eru.New(eru.Deps{
		Logger: a.log.With("front", "eru"), Config: a.config, Members: a.store, Applier: a.rec,
		Definitions: a, Gateways: a,
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: like.ReadHeaderTimeout, ReadTimeout: like.ReadTimeout,
		WriteTimeout: like.WriteTimeout, IdleTimeout: like.IdleTimeout, ErrorLog: like.ErrorLog}
	serve(ctx, g, srv, ln, "Eru adapter")
	a.log.Info("Eru elb adapter listening", "addr", ln.Addr().String())
}

// newHandler serves the API listener: the web console under /ui/, the API everywhere else
// (the API answers unknown paths itself, with JSON errors).
func (a *Agent) newHandler() http.Handler {
	a.console = console.New(console.Options{Logger: a.log, Keys: a.sec.keys, Limiter: a.sec.limiter, API: a.api})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			a.console.ServeHTTP(w, r)
			return
		}
		a.api.ServeHTTP(w, r)
	})
}

func lastGoodPath(cfg *config.Config) string {
	return filepath.Join(cfg.StateDir, config.LastGoodName)
}

// fallBackToLastGood installs the last-known-good config when the first apply failed and the
// output holds nothing usable, so that a managed haproxy can still start.
func (a *Agent) fallBackToLastGood() error {
	cfg := a.config()
	if _, err := os.Stat(cfg.Output); err == nil {
		return nil
	}
	data, err := os.ReadFile(a.rec.LastGood())
	if err != nil {
		if !cfg.Managed {
			return nil
		}
		return fmt.Errorf("no last-known-good config to start haproxy with: %w", err)
	}
	a.log.Warn("starting from the last-known-good config", "path", a.rec.LastGood())
	if err := atomicfile.Write(cfg.Output, data, 0o644); err != nil {
		return fmt.Errorf("restore last-known-good config: %w", err)
	}
	a.rec.LoadInstalled()
	return nil
}

// Status is what GET /v1/status answers.
type Status struct {
	LastApply reconcile.ApplyStatus `json:"last_apply"`
	// RecentApplies are the last applies that changed haproxy or failed, newest first.
	RecentApplies  []reconcile.ApplyStatus `json:"recent_applies"`
	PendingChanges int                     `json:"pending_changes"`
	Reloads        uint64                  `json:"reloads"`
	ApplyFailures  uint64                  `json:"apply_failures"`
	// HaproxyRestarts counts managed haproxy masters started again after one died.
	HaproxyRestarts uint64 `json:"haproxy_restarts"`
	HaproxyVersion  string `json:"haproxy_version"`
	Mode            string `json:"mode"`
	Output          string `json:"output"`
	Template        string `json:"template"`
	HaproxyPID      int    `json:"haproxy_pid,omitempty"`
	// ReloadOnly lists the backends whose changes always reload, and why (haproxy 2.6 refuses
	// dynamic servers there).
	ReloadOnly map[string]string `json:"reload_only_backends,omitempty"`
	Draining   int               `json:"draining_servers"`
	// RuntimeFallbacks counts runtime API changes that failed and were applied by a reload;
	// LastRuntimeError is the last such failure.
	RuntimeFallbacks uint64 `json:"runtime_fallbacks"`
	LastRuntimeError string `json:"last_runtime_error,omitempty"`
	RuntimeAPI       string `json:"runtime_socket,omitempty"`
	// Store is where the membership lives and whether it answers (etcd: shared by a fleet).
	Store   etcdstore.Status `json:"store"`
	Version string           `json:"clbd_version"`
	Uptime  string           `json:"uptime"`
}

func (a *Agent) status() Status {
	rs := a.rec.Status()
	cfg := a.config()
	s := Status{
		LastApply: rs.LastApply, RecentApplies: rs.Recent, PendingChanges: rs.Pending, Reloads: rs.Reloads, ApplyFailures: rs.Failures,
		HaproxyVersion: a.version, Mode: "external", Output: cfg.Output, Version: Version,
		Uptime: time.Since(a.started).Round(time.Second).String(), Template: templateSource(cfg.Templates),
		ReloadOnly: rs.ReloadOnly, Draining: rs.Draining, RuntimeFallbacks: rs.RuntimeFallbacks,
		LastRuntimeError: rs.LastRuntimeError, RuntimeAPI: rs.AdminSocket,
	}
	if m := a.managedHaproxy(); m != nil {
		s.Mode, s.HaproxyPID, s.HaproxyRestarts = "managed", m.Pid(), m.Restarts()
	}
	s.Store = a.storeStatus()
	return s
}

// agentStatus is the api.Status of the agent.
type agentStatus struct{ a *Agent }

func (s agentStatus) Status() any                          { return s.a.status() }
func (s agentStatus) Health() map[string]map[string]string { return s.a.rec.Health() }
func (s agentStatus) Draining() map[string][]string        { return s.a.rec.Draining() }

// serve runs srv on ln in g until ctx ends, then shuts it down (5 s for calls in flight).
func serve(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener, what string) {
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", what, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

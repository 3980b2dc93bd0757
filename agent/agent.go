// Package agent is clbd, the daemon beside haproxy: it serves the registration API, keeps the
// membership durable, and applies every change to haproxy through one reconciler goroutine
// (render → haproxy -c → atomic install → reload, with a last-known-good copy to fall back on).
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

	"clb/internal/atomicfile"
	"clb/internal/etcdstore"
	"clb/internal/haproxy"
	"clb/internal/sdnotify"
)

// Files clbd keeps in its state dir.
const (
	lastGoodName     = "haproxy.cfg.last-good"
	managedCfgName   = "haproxy.cfg"
	adminSocketName  = "haproxy-admin.sock"
	passwordFileName = "password"
	serverStateName  = "haproxy.state"
)

// Version is clbd's version, set at build time with -ldflags "-X clb/agent.Version=...".
var Version = "dev"

// Options are what the command line passes besides the config.
type Options struct {
	// ConfigPath is the config file to watch and hot-reload, empty for none.
	ConfigPath string
	// Reload re-reads the config file with the command line's flags laid over it again.
	Reload func() (*Config, error)
	Logger *slog.Logger
	// Ready, if set, is closed when the API is listening and haproxy has its config.
	Ready chan<- net.Addr

	// wrapRuntime lets tests wrap the runtime API client to inject failures.
	wrapRuntime func(dial func(context.Context) (runtimeClient, error)) func(context.Context) (runtimeClient, error)
}

// Agent is a running clbd.
type Agent struct {
	opts  Options
	log   *slog.Logger
	cfg   atomic.Pointer[Config]
	store memberStore
	// shared is the etcd store when the membership is shared with other nodes, else nil.
	shared  *etcdstore.Store
	sec     security
	rec     *reconciler
	managed *haproxy.Managed
	started time.Time
	version string
	restart atomic.Bool
	cancel  context.CancelFunc
	metrics *metrics

	// defs are the API's service definitions and disabled zones; fileServices the config
	// file's services. setServices merges them into cfg under cfgMu.
	defs         *defs
	fileServices map[string]Service
	cfgMu        sync.Mutex
}

// drainTimeout is the draining timeout of the service a backend belongs to (backends are named
// service_port by the built-in template; 30 s for backends clbd does not know).
func (a *Agent) drainTimeout(backend string) time.Duration {
	cfg := a.config()
	if i := strings.LastIndexByte(backend, '_'); i > 0 {
		if svc, ok := cfg.Services[backend[:i]]; ok {
			return svc.DrainingTimeout
		}
	}
	return 30 * time.Second
}

// New checks cfg and prepares an agent; nothing runs until Run.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	a := &Agent{opts: opts, log: opts.Logger}
	a.cfg.Store(cfg)
	return a, nil
}

func (a *Agent) config() *Config { return a.cfg.Load() }

// Restart stops the agent like a cancel, but leaves a managed haproxy running so that the
// process that replaces this one (see Reexec) adopts it without a gap in traffic.
func (a *Agent) Restart() {
	a.restart.Store(true)
	if a.managed != nil {
		a.managed.Detach()
	}
	if a.cancel != nil {
		a.cancel()
	}
}

// Restarting reports whether Run ended because of Restart.
func (a *Agent) Restarting() bool { return a.restart.Load() }

// OutputPath is where the rendered config goes: -o, or in managed mode the state dir unless
// -o was given.
func OutputPath(cfg *Config, outputSet bool) string {
	if cfg.Managed && !outputSet {
		return filepath.Join(cfg.StateDir, managedCfgName)
	}
	return cfg.Output
}

// Run serves until ctx ends. Everything runs under one errgroup; the first failure stops all.
func (a *Agent) Run(ctx context.Context) error {
	ctx, a.cancel = context.WithCancel(ctx)
	defer a.cancel()
	cfg := a.config()
	a.started = time.Now()
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := a.openStore(ctx, cfg); err != nil {
		return err
	}
	if a.shared != nil {
		defer a.shared.Close()
	}
	if err := a.setServices(cfg.Services); err != nil {
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

	a.rec = &reconciler{
		log: a.log, store: a.store, config: a.config, tmplDir: cfg.Templates, output: cfg.Output,
		lastGood: filepath.Join(cfg.StateDir, lastGoodName), bin: cfg.Haproxy,
		quiet: cfg.ApplyQuiet, maxWait: cfg.ApplyMaxWait, kick: make(chan struct{}, 1),
		drainFor: a.drainTimeout,
	}
	a.metrics = newMetrics(a)
	a.rec.metrics = a.metrics
	if cfg.Managed {
		a.rec.admin = filepath.Join(cfg.StateDir, adminSocketName)
	} else {
		a.rec.admin = cfg.RuntimeSocket
	}
	if a.rec.admin != "" {
		sock := a.rec.admin
		a.rec.dial = func(ctx context.Context) (runtimeClient, error) { return dialRuntime(ctx, sock) }
		a.rec.stateFile = filepath.Join(cfg.StateDir, serverStateName)
		// An empty state (format version line only) until the first dump, so haproxy does not
		// warn that the file is missing.
		if _, err := os.Stat(a.rec.stateFile); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.Write(a.rec.stateFile, []byte("1\n"), 0o644); err != nil {
				return err
			}
		}
		if a.opts.wrapRuntime != nil {
			a.rec.dial = a.opts.wrapRuntime(a.rec.dial)
		}
	}
	if cfg.Managed {
		a.managed = haproxy.New(haproxy.Options{Binary: cfg.Haproxy, ConfigPath: cfg.Output, Dir: cfg.StateDir, Logger: a.log.With("component", "haproxy")})
		a.rec.reloader = a.managed
	} else if cfg.ReloadCmd != "" {
		r, err := newCommandReloader(cfg.ReloadCmd, cfg.ReloadTimeout)
		if err != nil {
			return err
		}
		a.rec.reloader = r
	}
	if !cfg.Managed && (cfg.ReloadCmd != "" || cfg.RuntimeSocket != "") {
		// External mode: haproxy is someone else's and assumed to be running.
		a.rec.running = true
	}
	a.rec.loadInstalled()
	if res := a.rec.apply(ctx, true); res.Err != nil {
		if err := a.fallBackToLastGood(); err != nil {
			return fmt.Errorf("first apply: %w; %w", res.Err, err)
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	srv := &http.Server{
		Handler:           newAPI(a),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}

	g, ctx := errgroup.WithContext(ctx)
	if a.managed != nil {
		g.Go(func() error { return a.managed.Run(ctx) })
		if err := a.managed.WaitReady(ctx); err != nil {
			ln.Close()
			a.cancel()
			return errors.Join(fmt.Errorf("start haproxy: %w", err), g.Wait())
		}
		a.rec.setRunning(true)
		a.log.Info("haproxy running", "pid", a.managed.Pid(), "path", cfg.Output)
	}
	g.Go(func() error { return a.rec.Run(ctx) })
	g.Go(func() error { return a.expireLeases(ctx) })
	if a.shared != nil {
		g.Go(func() error { return a.shared.Run(ctx) })
		g.Go(func() error { return a.followStore(ctx) })
	}
	g.Go(func() error { return a.watch(ctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	a.log.Info("clbd listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil, "managed", cfg.Managed, "output", cfg.Output, "state_dir", cfg.StateDir)
	a.notifySystemd(sdnotify.Ready)
	if a.opts.Ready != nil {
		a.opts.Ready <- ln.Addr()
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// fallBackToLastGood installs the last-known-good config when the first apply failed and the
// output holds nothing usable, so that a managed haproxy can still start.
func (a *Agent) fallBackToLastGood() error {
	cfg := a.config()
	if _, err := os.Stat(cfg.Output); err == nil {
		return nil
	}
	data, err := os.ReadFile(a.rec.lastGood)
	if err != nil {
		if !cfg.Managed {
			return nil
		}
		return fmt.Errorf("no last-known-good config to start haproxy with: %w", err)
	}
	a.log.Warn("starting from the last-known-good config", "path", a.rec.lastGood)
	if err := os.WriteFile(cfg.Output, data, 0o644); err != nil {
		return fmt.Errorf("restore last-known-good config: %w", err)
	}
	a.rec.loadInstalled()
	return nil
}

// Status is what GET /v1/status answers.
type Status struct {
	LastApply      ApplyStatus `json:"last_apply"`
	PendingChanges int         `json:"pending_changes"`
	Reloads        uint64      `json:"reloads"`
	ApplyFailures  uint64      `json:"apply_failures"`
	HaproxyVersion string      `json:"haproxy_version"`
	Mode           string      `json:"mode"`
	Output         string      `json:"output"`
	Template       string      `json:"template"`
	HaproxyPID     int         `json:"haproxy_pid,omitempty"`
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
	last, reloads, failures := a.rec.lastStatus()
	cfg := a.config()
	s := Status{
		LastApply: last, PendingChanges: a.rec.pending(), Reloads: reloads, ApplyFailures: failures,
		HaproxyVersion: a.version, Mode: "external", Output: cfg.Output, Version: Version,
		Uptime: time.Since(a.started).Round(time.Second).String(), Template: templateSource(cfg.Templates),
	}
	if a.managed != nil {
		s.Mode, s.HaproxyPID = "managed", a.managed.Pid()
	}
	s.ReloadOnly, s.Draining = a.rec.runtimeStatus()
	s.RuntimeFallbacks, s.LastRuntimeError = a.rec.fallbackStatus()
	s.RuntimeAPI = a.rec.admin
	s.Store = a.storeStatus()
	return s
}

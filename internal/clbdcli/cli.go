// Package clbdcli is clbd's command line (urfave/cli): the daemon and its subcommands (render,
// check, keys, passwd, store migrate, version) and the operator commands over the running
// clbd's API (status, members, zone disable|enable, unregister: ops_cmd.go, apiclient.go,
// table.go). cmd/clbd only calls Main; the man pages and
// completions are generated from App (internal/tools/gendocs). It builds the config (defaults,
// the file, the flags), hands it to package agent and turns errors into exit codes (exitcodes.go).
//
// Global flags reach every subcommand: `clbd --config F check` and `clbd check --config F`
// read the same file (a flag given after the subcommand wins).
package clbdcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"clb/agent"
	"clb/agent/config"
	"clb/agent/reconcile"
	"clb/internal/haproxy"
	"clb/internal/render"
)

// Main runs the clbd command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	app := App(stdout, stderr)
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "clbd: %v\n", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func flags() []cli.Flag {
	d := config.Defaults()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: config.DefaultConfigPath, Usage: "config file (YAML; watched, services hot-reloaded)"},
		&cli.StringFlag{Name: "listen", Value: d.Listen, EnvVars: []string{"CLB_LISTEN"}, Usage: "API address"},
		&cli.StringFlag{Name: "templates", Value: d.Templates, Usage: "directory holding haproxy.tmpl (built-in template when absent; watched)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: d.Output, Usage: "where the rendered haproxy.cfg is installed (managed mode: STATE_DIR/haproxy.cfg unless given)"},
		&cli.StringFlag{Name: "reload-cmd", Usage: "command that reloads haproxy, e.g. \"systemctl reload haproxy\" (parsed as shell words, no shell)"},
		&cli.StringFlag{Name: "state-dir", Value: d.StateDir, Usage: "durable membership state and last-known-good config"},
		&cli.StringFlag{Name: "haproxy", Value: d.Haproxy, Usage: "haproxy binary for -c and managed mode"},
		&cli.StringFlag{Name: "runtime-socket", Usage: "haproxy admin socket for hitless changes (external mode)"},
		&cli.BoolFlag{Name: "managed", Usage: "start and supervise haproxy (master-worker) and reload it through its master socket"},
		&cli.StringFlag{Name: "password-file", Usage: "file holding the shared password (key \"default\"); default STATE_DIR/password, generated if missing (and no keys file)"},
		&cli.StringFlag{Name: "keys-file", Usage: "YAML file of scoped API keys (mode 0600; watched; see clbd keys)"},
		&cli.StringFlag{Name: "aws-listen", Usage: "also serve the AWS ELB Query API (2012-06-01) on this address (config key aws_listen; off by default)"},
		&cli.StringFlag{Name: "eru-listen", Usage: "also serve the Eru elb adapter (/__erulb__/...) on this address, loopback unless eru_allow is set (config key eru_listen; off by default)"},
		&cli.StringFlag{Name: "tls-cert", Usage: "serve the API over TLS with this certificate (PEM; re-read when it changes)"},
		&cli.StringFlag{Name: "tls-key", Usage: "private key of --tls-cert (PEM)"},
		&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA (PEM)"},
		&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "debug, info, warn or error (config key log_level)"},
	}
}

// operatingHelp is the operator commands' part of `clbd help`.
const operatingHelp = `Without a command, clbd runs the daemon. The operator commands status, members, zone and
unregister talk to the running clbd's API, found and signed from the config file clbd reads
(--config, default /etc/clb/clbd.yaml, and --state-dir): its listen address on loopback, https
when it serves TLS (verified against its tls_cert), and the keys file's first admin key, else
the password file (key "default": reading works, zone and admin actions need an admin key:
clbd keys add --scope admin ID). Run them as root or as clb-server. Tables by default; --json
prints the API's JSON answer (status: {"status": ..., "services": [...]}).`

// App is clbd's command line: the daemon by default, render, check, keys, passwd, store,
// version, and the operator commands (status, members, zone, unregister).
func App(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:        "clbd",
		Usage:       "register members into haproxy: the clb load-balancer agent",
		Version:     agent.Version,
		Writer:      stdout,
		ErrWriter:   stderr,
		Flags:       flags(),
		Action:      func(c *cli.Context) error { return runDaemon(c, stderr) },
		Description: operatingHelp + "\n\n" + exitHelp,
		Commands: append([]*cli.Command{
			{Name: "render", Usage: "print the haproxy.cfg the current state would produce", Flags: flags(),
				Action: func(c *cli.Context) error { return renderCmd(c, stdout, false) }},
			{Name: "check", Usage: "render and run haproxy -c; exit 0 only if haproxy accepts it", Flags: flags(),
				Action: func(c *cli.Context) error { return renderCmd(c, stdout, true) }},
			keysCommand(stdout, stderr),
			passwdCommand(stdout, stderr),
			storeCommand(stdout, stderr),
			gatewayCommand(stdout, stderr),
			{Name: "version", Usage: "print the version", Action: func(c *cli.Context) error {
				fmt.Fprintf(stdout, "clbd %s\n", agent.Version)
				return nil
			}},
		}, opCommands(stdout, stderr)...),
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// setIn is the context, of c or of a command above it, where flag name was given: a flag after
// the subcommand wins over the same flag before it. nil when it was given nowhere.
func setIn(c *cli.Context, name string) *cli.Context {
	for _, lc := range c.Lineage() {
		if slices.Contains(lc.LocalFlagNames(), name) {
			return lc
		}
	}
	return nil
}

func isSet(c *cli.Context, name string) bool { return setIn(c, name) != nil }

// str is the value of flag name wherever it was given, else its default.
func str(c *cli.Context, name string) string {
	if lc := setIn(c, name); lc != nil {
		return lc.String(name)
	}
	return c.String(name)
}

// configFromCLI builds the config: defaults, then the config file, then the flags that were
// given, then the defaults the file left empty (SetDefaults); it does not validate. A missing
// config file is fine only when --config was not given: clbd then runs the embedded default
// config.
func configFromCLI(c *cli.Context) (*config.Config, string, error) {
	cfg := config.Defaults()
	path := str(c, "config")
	if _, err := os.Stat(path); err != nil && !isSet(c, "config") && errors.Is(err, os.ErrNotExist) {
		if err := config.Decode(&cfg, config.DefaultConfigYAML(), "built-in default"); err != nil {
			return nil, "", err
		}
		path = ""
	} else if err := config.LoadFile(&cfg, path); err != nil {
		return nil, "", err
	}
	overlay(c, &cfg)
	// haproxy reads a socket path without a slash as an address: a relative state dir (whose
	// admin socket and server-state file go into haproxy.cfg) is made absolute.
	if cfg.StateDir != "" && !filepath.IsAbs(cfg.StateDir) {
		abs, err := filepath.Abs(cfg.StateDir)
		if err != nil {
			return nil, "", fmt.Errorf("state_dir %q: %w", cfg.StateDir, err)
		}
		cfg.StateDir = abs
	}
	cfg.Output = config.OutputPath(&cfg, isSet(c, "output") || cfg.Output != config.Defaults().Output)
	cfg.SetDefaults()
	return &cfg, path, nil
}

// validConfig is configFromCLI, validated.
func validConfig(c *cli.Context) (*config.Config, string, error) {
	cfg, path, err := configFromCLI(c)
	if err != nil {
		return nil, "", err
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("config: %w", err)
	}
	return cfg, path, nil
}

// overlay lays the flags that were given over cfg.
func overlay(c *cli.Context, cfg *config.Config) {
	set := func(name string, dst *string) {
		if isSet(c, name) {
			*dst = str(c, name)
		}
	}
	set("listen", &cfg.Listen)
	set("aws-listen", &cfg.AWSListen)
	set("eru-listen", &cfg.EruListen)
	set("templates", &cfg.Templates)
	set("output", &cfg.Output)
	set("reload-cmd", &cfg.ReloadCmd)
	set("haproxy", &cfg.Haproxy)
	set("runtime-socket", &cfg.RuntimeSocket)
	set("password-file", &cfg.PasswordFile)
	set("keys-file", &cfg.KeysFile)
	set("tls-cert", &cfg.TLSCert)
	set("tls-key", &cfg.TLSKey)
	set("tls-client-ca", &cfg.TLSClientCA)
	set("log-level", &cfg.LogLevel)
	if isSet(c, "state-dir") {
		cfg.StateDir = str(c, "state-dir")
		if !isSet(c, "templates") && cfg.Templates == config.Defaults().Templates {
			cfg.Templates = filepath.Join(cfg.StateDir, "templates")
		}
	}
	if lc := setIn(c, "managed"); lc != nil {
		cfg.Managed = lc.Bool("managed")
	}
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, cli.Exit(fmt.Sprintf("log level %q: want debug, info, warn or error", level), ExitUsage)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runDaemon(c *cli.Context, stderr io.Writer) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("unknown command %q (see clbd --help)", c.Args().First()), ExitUsage)
	}
	cfg, path, err := validConfig(c)
	if err != nil {
		return cli.Exit(err.Error(), ExitConfig)
	}
	log, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.Options{
		ConfigPath: path,
		Reload: func() (*config.Config, error) {
			next, _, err := configFromCLI(c)
			return next, err
		},
		Logger: log,
	})
	if err != nil {
		return cli.Exit("config: "+err.Error(), ExitConfig)
	}
	if path == "" {
		log.Info("no config file: running the built-in default config", "services", "web")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupDone := make(chan struct{})
	defer func() { <-hupDone }()
	go func() {
		defer close(hupDone)
		onHangup(ctx, hup, log, func() error { _, _, err := validConfig(c); return err }, a.Restart)
	}()
	if err := a.Run(ctx); err != nil {
		stop()
		return err
	}
	stop()
	if a.Restarting() {
		return reexec()
	}
	return nil
}

// onHangup restarts clbd in place on SIGHUP (systemctl reload), but only with a config that
// checks: a config file with a syntax error or an unknown key is refused with a log line, and
// clbd keeps running on the config it has (with its haproxy and its API) until the next
// SIGHUP. It returns when ctx ends or after asking for the restart.
func onHangup(ctx context.Context, hup <-chan os.Signal, log *slog.Logger, check func() error, restart func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if err := check(); err != nil {
			log.Error("SIGHUP: the new config does not check; not restarting, clbd keeps running on the config it has", "err", err)
			continue
		}
		log.Info("SIGHUP: restarting clbd in place; haproxy keeps serving")
		restart()
		return
	}
}

// reexec replaces this process with a fresh clbd (same PID, same arguments), which adopts the
// running haproxy: an upgrade or restart of clbd without a gap in traffic.
func reexec() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return syscall.Exec(exe, os.Args, os.Environ())
}

func renderCmd(c *cli.Context, stdout io.Writer, check bool) error {
	cfg, _, err := validConfig(c)
	if err != nil {
		return cli.Exit(err.Error(), ExitConfig)
	}
	snapCtx, cancelSnap := context.WithTimeout(context.Background(), 2*cfg.Store.DialTimeout+time.Second)
	snap, err := readSnapshot(snapCtx, cfg)
	cancelSnap()
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	tmpl, source, err := render.Load(cfg.Templates)
	if err != nil {
		return cli.Exit(fmt.Sprintf("template %s: %v", source, err), ExitFailure)
	}
	// The same environment the daemon renders with.
	env := render.Data{TemplateSource: source, AdminSocket: cfg.AdminSocket(), ServerStateFile: cfg.ServerStateFile()}
	installed, _ := os.ReadFile(cfg.Output) // the slots members hold now, if it is there
	data := reconcile.Desired(cfg, snap, reconcile.PlanSlots(installed, cfg, snap), env)
	// The gateways' map files: beside the output for render; for check, in a directory of
	// its own that haproxy -c reads (the installed ones are not touched).
	// https gateways' certificates likewise (render only reads and validates them).
	mapDir, certDir := config.MapDir(cfg.Output), config.CertDir(cfg.Output)
	if check && len(cfg.Gateways) > 0 {
		tmp, err := os.MkdirTemp("", "clbd-check-maps-*")
		if err != nil {
			return cli.Exit(err.Error(), ExitFailure)
		}
		defer os.RemoveAll(tmp)
		mapDir, certDir = filepath.Join(tmp, config.MapDirName), filepath.Join(tmp, config.CertDirName)
	}
	data.GatewayConfig, data.Maps, data.Certs, err = reconcile.Gateways(cfg, mapDir, certDir)
	if err != nil {
		return cli.Exit(err.Error(), ExitConfig)
	}
	out, err := render.Render(tmpl, data)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	if check {
		if _, err := reconcile.WriteMaps(data.Maps); err != nil {
			return cli.Exit(err.Error(), ExitFailure)
		}
		if _, err := reconcile.WriteCerts(data.Certs); err != nil {
			return cli.Exit(err.Error(), ExitFailure)
		}
	}
	if !check {
		_, err := stdout.Write(out)
		return err
	}
	f, err := os.CreateTemp("", "clbd-check-*.cfg")
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(out); err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := haproxy.Check(ctx, cfg.Haproxy, f.Name()); err != nil {
		return cli.Exit(fmt.Sprintf("check: config rendered from %s: %v", source, err), ExitFailure)
	}
	fmt.Fprintf(stdout, "ok: haproxy accepts the config rendered from %s (%d services)\n", source, len(cfg.Services))
	return nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

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
	d := Defaults()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: DefaultConfigPath, Usage: "config file (YAML; watched, services hot-reloaded)"},
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
		&cli.StringFlag{Name: "tls-cert", Usage: "serve the API over TLS with this certificate (PEM; re-read when it changes)"},
		&cli.StringFlag{Name: "tls-key", Usage: "private key of --tls-cert (PEM)"},
		&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by this CA (PEM)"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
	}
}

// App is clbd's command line: the daemon by default, and render, check and version.
func App(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "clbd",
		Usage:     "register members into haproxy: the clb load-balancer agent",
		Version:   Version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     flags(),
		Action:    func(c *cli.Context) error { return runDaemon(c, stderr) },
		Commands: []*cli.Command{
			{Name: "render", Usage: "print the haproxy.cfg the current state would produce", Flags: flags(),
				Action: func(c *cli.Context) error { return renderCmd(c, stdout, false) }},
			{Name: "check", Usage: "render and run haproxy -c; exit 0 only if haproxy accepts it", Flags: flags(),
				Action: func(c *cli.Context) error { return renderCmd(c, stdout, true) }},
			keysCommand(stdout, stderr),
			passwdCommand(stdout, stderr),
			storeCommand(stdout, stderr),
			{Name: "version", Usage: "print the version", Action: func(c *cli.Context) error {
				fmt.Fprintf(stdout, "clbd %s\n", Version)
				return nil
			}},
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// configFromCLI builds the config: defaults, then the config file, then the flags that were
// given. A missing config file is fine only when --config was not given: clbd then runs the
// embedded default config.
func configFromCLI(c *cli.Context) (*Config, string, error) {
	cfg := Defaults()
	path := c.String("config")
	if _, err := os.Stat(path); err != nil && !c.IsSet("config") && errors.Is(err, os.ErrNotExist) {
		if err := Decode(&cfg, defaultConfigYAML, "built-in default"); err != nil {
			return nil, "", err
		}
		path = ""
	} else if err := LoadFile(&cfg, path); err != nil {
		return nil, "", err
	}
	overlay(c, &cfg)
	cfg.Output = OutputPath(&cfg, c.IsSet("output") || cfg.Output != Defaults().Output)
	return &cfg, path, nil
}

// overlay lays the flags that were given over cfg.
func overlay(c *cli.Context, cfg *Config) {
	set := func(name string, dst *string) {
		if c.IsSet(name) {
			*dst = c.String(name)
		}
	}
	set("listen", &cfg.Listen)
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
	if c.IsSet("state-dir") {
		cfg.StateDir = c.String("state-dir")
		if !c.IsSet("templates") && cfg.Templates == Defaults().Templates {
			cfg.Templates = filepath.Join(cfg.StateDir, "templates")
		}
	}
	if c.IsSet("managed") {
		cfg.Managed = c.Bool("managed")
	}
}

func newLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, cli.Exit(fmt.Sprintf("--log-level: %v", err), 64)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

func runDaemon(c *cli.Context, stderr io.Writer) error {
	if c.NArg() > 0 {
		return cli.Exit(fmt.Sprintf("unknown command %q (see clbd --help)", c.Args().First()), 64)
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	cfg, path, err := configFromCLI(c)
	if err != nil {
		return cli.Exit(err.Error(), 78)
	}
	a, err := New(cfg, Options{
		ConfigPath: path,
		Reload: func() (*Config, error) {
			next, _, err := configFromCLI(c)
			return next, err
		},
		Logger: log,
	})
	if err != nil {
		return cli.Exit("config: "+err.Error(), 78)
	}
	if path == "" {
		log.Info("no config file: running the built-in default config", "services", "web")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		select {
		case <-hup:
			log.Info("SIGHUP: restarting clbd in place; haproxy keeps serving")
			a.Restart()
		case <-ctx.Done():
		}
	}()
	if err := a.Run(ctx); err != nil {
		return err
	}
	if a.Restarting() {
		return reexec()
	}
	return nil
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
	cfg, _, err := configFromCLI(c)
	if err != nil {
		return cli.Exit(err.Error(), 78)
	}
	if err := cfg.Validate(); err != nil {
		return cli.Exit("config: "+err.Error(), 78)
	}
	snapCtx, cancelSnap := context.WithTimeout(context.Background(), 2*cfg.Store.DialTimeout+time.Second)
	snap, err := readSnapshot(snapCtx, cfg)
	cancelSnap()
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	tmpl, source, err := render.Load(cfg.Templates)
	if err != nil {
		return cli.Exit(fmt.Sprintf("template %s: %v", source, err), 1)
	}
	env := render.Data{TemplateSource: source, AdminSocket: cfg.RuntimeSocket}
	if cfg.Managed {
		env.AdminSocket = filepath.Join(cfg.StateDir, adminSocketName)
	}
	if env.AdminSocket != "" {
		env.ServerStateFile = filepath.Join(cfg.StateDir, serverStateName)
	}
	out, err := render.Render(tmpl, cfg.renderData(snap, env))
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if !check {
		_, err := stdout.Write(out)
		return err
	}
	f, err := os.CreateTemp("", "clbd-check-*.cfg")
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(out); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := haproxy.Check(ctx, cfg.Haproxy, f.Name()); err != nil {
		return cli.Exit(fmt.Sprintf("check: config rendered from %s: %v", source, err), 1)
	}
	fmt.Fprintf(stdout, "ok: haproxy accepts the config rendered from %s (%d services)\n", source, len(cfg.Services))
	return nil
}

package clbdcli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"

	"clb/agent/api"
	"clb/agent/config"
	"clb/internal/model"
)

// The operator commands: clbd status, clbd members SERVICE, clbd zone disable|enable SERVICE
// ZONE and clbd unregister SERVICE MEMBER, over the local clbd's API (apiclient.go). Human
// tables by default (table.go), --json for scripts: the API's JSON as it answered (status:
// {"status": GET /v1/status, "services": GET /v1/services's list}).

// defaultOpTimeout bounds a whole operator call. An unregister answers when the member has
// drained (at most the service's draining_timeout, 30 s by default) and the API gives up
// waiting after request_timeout (60 s): this is above both.
const defaultOpTimeout = 90 * time.Second

func opFlags() []cli.Flag {
	d := config.Defaults()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: config.DefaultConfigPath, Usage: "the config file clbd runs with: its listen address, TLS settings, keys and password files"},
		&cli.StringFlag{Name: "state-dir", Value: d.StateDir, Usage: "clbd's state dir (where the generated password is, when the config names no password_file)"},
		&cli.StringFlag{Name: "listen", Value: d.Listen, EnvVars: []string{"CLB_LISTEN"}, Usage: "clbd's API address, when it is not the config's"},
		&cli.StringFlag{Name: "password-file", Usage: "the shared password (key \"default\"), when it is not the config's"},
		&cli.StringFlag{Name: "keys-file", Usage: "the keys file, when it is not the config's"},
		&cli.StringFlag{Name: "server", Usage: "clbd's API `URL` (default: from the config's listen and TLS settings, on loopback)"},
		&cli.StringFlag{Name: "key", Usage: "key `ID` to sign with: one of the keys file, or \"default\" (the password file); default: the keys file's first admin key, else \"default\""},
		&cli.StringFlag{Name: "ca", Usage: "CA bundle to verify an https --server with (default: the config's tls_cert, else the system roots)"},
		&cli.StringFlag{Name: "client-cert", Usage: "client certificate (PEM), when the API requires one (tls_client_ca)"},
		&cli.StringFlag{Name: "client-key", Usage: "private key of --client-cert (PEM)"},
		&cli.DurationFlag{Name: "timeout", Value: defaultOpTimeout, Usage: "give up after this long"},
		&cli.BoolFlag{Name: "json", Usage: "print the API's JSON answer instead of a table"},
	}
}

func opCommands(stdout, stderr io.Writer) []*cli.Command {
	noWait := &cli.BoolFlag{Name: "no-wait", Usage: "answer once the change is saved (202) instead of once haproxy runs it"}
	return []*cli.Command{
		{
			Name: "status", Usage: "show the daemon, the last applies, every service with its members (health, weight, zone, lease) and the draining ones",
			Description: "GET /v1/status and GET /v1/services of the local clbd, signed with the local credentials (see clbd help: where the commands find clbd and a key).",
			Flags:       opFlags(),
			Action: func(c *cli.Context) error {
				if err := wantArgs(c, "status"); err != nil {
					return err
				}
				return withClient(c, func(ctx context.Context, cl *apiClient) error {
					rawStatus, _, err := cl.call(ctx, "GET", "/v1/status", nil)
					if err != nil {
						return jsonError(c, stdout, rawStatus, err)
					}
					rawServices, _, err := cl.call(ctx, "GET", "/v1/services", nil)
					if err != nil {
						return jsonError(c, stdout, rawServices, err)
					}
					var list struct {
						Services json.RawMessage `json:"services"`
					}
					if err := json.Unmarshal(rawServices, &list); err != nil || list.Services == nil {
						return cli.Exit(fmt.Sprintf("GET /v1/services: unexpected answer: %v", err), ExitDataErr)
					}
					if c.Bool("json") {
						return printJSON(stdout, map[string]json.RawMessage{"status": rawStatus, "services": list.Services})
					}
					var rep statusReport
					if err := json.Unmarshal(rawStatus, &rep.Status); err != nil {
						return cli.Exit(fmt.Sprintf("GET /v1/status: unexpected answer: %v", err), ExitDataErr)
					}
					if err := json.Unmarshal(list.Services, &rep.Services); err != nil {
						return cli.Exit(fmt.Sprintf("GET /v1/services: unexpected answer: %v", err), ExitDataErr)
					}
					return renderStatus(stdout, rep.Status, rep.Services, time.Now())
				})
			},
		},
		{
			Name: "members", Usage: "show one service's zones and members (health, weight, zone, lease) and the draining ones", ArgsUsage: "SERVICE",
			Flags: opFlags(),
			Action: func(c *cli.Context) error {
				if err := wantArgs(c, "members", "SERVICE"); err != nil {
					return err
				}
				service := c.Args().Get(0)
				if err := model.ValidateServiceName(service); err != nil {
					return cli.Exit(err.Error(), ExitUsage)
				}
				return withClient(c, func(ctx context.Context, cl *apiClient) error {
					raw, _, err := cl.call(ctx, "GET", "/v1/services/"+url.PathEscape(service), nil)
					if err != nil {
						return jsonError(c, stdout, raw, err)
					}
					if c.Bool("json") {
						return printJSON(stdout, json.RawMessage(raw))
					}
					var v api.ServiceView
					if err := json.Unmarshal(raw, &v); err != nil {
						return cli.Exit(fmt.Sprintf("GET /v1/services/%s: unexpected answer: %v", service, err), ExitDataErr)
					}
					return renderMembers(stdout, v, time.Now())
				})
			},
		},
		{
			Name: "zone", Usage: "take a zone of a service out of rotation (its members get weight 0, in-flight requests finish) or put it back (admin key)",
			Subcommands: []*cli.Command{
				zoneCommand(stdout, false, noWait),
				zoneCommand(stdout, true, noWait),
			},
		},
		{
			Name: "unregister", Usage: "drain a member and remove it: out of rotation at once, removed when its connections end (at most the service's draining_timeout); answers then",
			Description: "This is the drain: the API (DELETE /v1/services/SERVICE/members/MEMBER) takes the member out of rotation, " +
				"waits until haproxy has no connection to it left (or draining_timeout passed) and answers once haproxy runs without it. " +
				"A member registered with clb_register --keepalive registers again on its next renewal; stop its unit instead.",
			ArgsUsage: "SERVICE MEMBER",
			Flags:     append(opFlags(), noWait),
			Action: func(c *cli.Context) error {
				if err := wantArgs(c, "unregister", "SERVICE", "MEMBER"); err != nil {
					return err
				}
				service, member := c.Args().Get(0), c.Args().Get(1)
				if err := model.ValidateServiceName(service); err != nil {
					return cli.Exit(err.Error(), ExitUsage)
				}
				if err := model.ValidateMemberName(member); err != nil {
					return cli.Exit(err.Error(), ExitUsage)
				}
				return withClient(c, func(ctx context.Context, cl *apiClient) error {
					raw, status, err := cl.call(ctx, "DELETE", "/v1/services/"+url.PathEscape(service)+"/members/"+url.PathEscape(member)+waitQuery(c), nil)
					if err != nil {
						return jsonError(c, stdout, raw, err)
					}
					if c.Bool("json") {
						return printJSON(stdout, json.RawMessage(raw))
					}
					if status == 202 {
						fmt.Fprintf(stdout, "member %s of %s: unregistration saved; haproxy drains it next (see clbd status)\n", member, service)
						return nil
					}
					fmt.Fprintf(stdout, "member %s of %s: drained and removed; haproxy no longer routes to it\n", member, service)
					return nil
				})
			},
		},
	}
}

func zoneCommand(stdout io.Writer, enable bool, noWait cli.Flag) *cli.Command {
	verb, usage := "disable", "take ZONE of SERVICE out of rotation: its members get weight 0, in-flight requests finish (admin key)"
	if enable {
		verb, usage = "enable", "put ZONE of SERVICE back into rotation (admin key)"
	}
	return &cli.Command{
		Name: verb, Usage: usage, ArgsUsage: "SERVICE ZONE",
		Flags: append(opFlags(), noWait),
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, "zone "+verb, "SERVICE", "ZONE"); err != nil {
				return err
			}
			service, zone := c.Args().Get(0), c.Args().Get(1)
			if err := model.ValidateServiceName(service); err != nil {
				return cli.Exit(err.Error(), ExitUsage)
			}
			if err := model.ValidateZone(zone); err != nil || zone == "" {
				return cli.Exit(fmt.Sprintf("zone %q: want 1-64 of a-z 0-9 - _", zone), ExitUsage)
			}
			return withClient(c, func(ctx context.Context, cl *apiClient) error {
				raw, status, err := cl.call(ctx, "POST", "/v1/services/"+url.PathEscape(service)+"/zones/"+url.PathEscape(zone)+"/"+verb+waitQuery(c), nil)
				if err != nil {
					return jsonError(c, stdout, raw, err)
				}
				if c.Bool("json") {
					return printJSON(stdout, json.RawMessage(raw))
				}
				state := map[bool]string{false: "disabled: its members get no new requests", true: "enabled: its members take traffic again"}[enable]
				if status == 202 {
					fmt.Fprintf(stdout, "zone %s of %s: saved as %s once applied (see clbd status)\n", zone, service, verb+"d")
					return nil
				}
				fmt.Fprintf(stdout, "zone %s of %s %s (applied)\n", zone, service, state)
				return nil
			})
		},
	}
}

// wantArgs checks the positional arguments, and that no flag hides after them (urfave/cli
// stops parsing flags at the first argument).
func wantArgs(c *cli.Context, cmd string, names ...string) error {
	args := c.Args().Slice()
	for _, a := range args {
		if len(a) > 1 && a[0] == '-' {
			return cli.Exit(fmt.Sprintf("flag %s after the arguments: flags come first (clbd %s [flags] %s)", a, cmd, joinArgs(names)), ExitUsage)
		}
	}
	if len(args) != len(names) {
		return cli.Exit(fmt.Sprintf("usage: clbd %s [flags] %s (got %d arguments)", cmd, joinArgs(names), len(args)), ExitUsage)
	}
	return nil
}

func joinArgs(names []string) string {
	var b bytes.Buffer
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n)
	}
	return b.String()
}

func waitQuery(c *cli.Context) string {
	if c.Bool("no-wait") {
		return "?wait=false"
	}
	return ""
}

// withClient runs fn with a client for the local clbd, bounded by --timeout.
func withClient(c *cli.Context, fn func(context.Context, *apiClient) error) error {
	cl, err := newAPIClient(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("timeout"))
	defer cancel()
	return fn(ctx, cl)
}

// jsonError prints the API's error answer on stdout under --json (scripts read the code there)
// and returns err, whose message goes to stderr.
func jsonError(c *cli.Context, stdout io.Writer, raw []byte, err error) error {
	if c.Bool("json") && len(raw) > 0 && json.Valid(raw) {
		printJSON(stdout, json.RawMessage(raw))
	}
	return err
}

// printJSON writes v indented, with a final newline.
func printJSON(w io.Writer, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return cli.Exit(err.Error(), ExitDataErr)
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

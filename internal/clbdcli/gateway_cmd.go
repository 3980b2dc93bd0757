package clbdcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"clb/internal/gateway"
)

// clbd gateway ...: the gateways of the local clbd over its API (admin key; a domain also with
// a key scoped to it). Definitions are read from a file (YAML or JSON, the shapes of the
// config file's gateways:, "-" for stdin); answers are the API's JSON, with the validation's
// warnings also on stderr.

func gatewayCommand(stdout, stderr io.Writer) *cli.Command {
	noWait := &cli.BoolFlag{Name: "no-wait", Usage: "answer once the change is saved (202) instead of once haproxy routes by it"}
	flags := func() []cli.Flag { return append(opFlags(), noWait) }
	gw := gatewayArg
	run := func(c *cli.Context, method, path string, body []byte) error {
		return withClient(c, func(ctx context.Context, cl *apiClient) error {
			raw, _, err := cl.call(ctx, method, path, body)
			if err != nil {
				if len(raw) > 0 && json.Valid(raw) {
					printJSON(stdout, json.RawMessage(raw))
				}
				return err
			}
			var ans struct{ Warnings []string }
			if json.Unmarshal(raw, &ans) == nil {
				for _, w := range ans.Warnings {
					fmt.Fprintf(stderr, "warning: %s\n", w)
				}
			}
			return printJSON(stdout, json.RawMessage(raw))
		})
	}
	return &cli.Command{
		Name:  "gateway",
		Usage: "list, show, define and remove gateways and their domains (admin key; domains also with a key scoped to them)",
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "every gateway with its domains and source (config or api)", Flags: opFlags(),
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, "gateway list"); err != nil {
						return err
					}
					return run(c, "GET", "/v1/gateways", nil)
				}},
			{Name: "get", Usage: "one gateway", ArgsUsage: "GATEWAY", Flags: opFlags(),
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, "gateway get", "GATEWAY"); err != nil {
						return err
					}
					name, err := gw(c, 0)
					if err != nil {
						return err
					}
					return run(c, "GET", "/v1/gateways/"+url.PathEscape(name), nil)
				}},
			{Name: "put", Usage: "define or replace a gateway (bind, protocol, headers, domains) from FILE", ArgsUsage: "GATEWAY FILE", Flags: flags(),
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, "gateway put", "GATEWAY", "FILE"); err != nil {
						return err
					}
					name, err := gw(c, 0)
					if err != nil {
						return err
					}
					var g gateway.Gateway
					body, err := readDefinition(c.Args().Get(1), &g)
					if err != nil {
						return err
					}
					return run(c, "PUT", "/v1/gateways/"+url.PathEscape(name)+waitQuery(c), body)
				}},
			{Name: "delete", Usage: "remove a gateway defined through the API, with its domains", ArgsUsage: "GATEWAY", Flags: flags(),
				Action: func(c *cli.Context) error {
					if err := wantArgs(c, "gateway delete", "GATEWAY"); err != nil {
						return err
					}
					name, err := gw(c, 0)
					if err != nil {
						return err
					}
					return run(c, "DELETE", "/v1/gateways/"+url.PathEscape(name)+waitQuery(c), nil)
				}},
			{Name: "domain", Usage: "show, define or remove one domain of a gateway (routes change without a reload)",
				Subcommands: []*cli.Command{
					{Name: "get", ArgsUsage: "GATEWAY HOST", Usage: "one domain", Flags: opFlags(),
						Action: func(c *cli.Context) error {
							path, err := domainPath(c, "gateway domain get")
							if err != nil {
								return err
							}
							return run(c, "GET", path, nil)
						}},
					{Name: "put", ArgsUsage: "GATEWAY HOST FILE", Usage: "define or replace a domain (routes, no_match_status, ...) from FILE", Flags: flags(),
						Action: func(c *cli.Context) error {
							path, err := domainPath(c, "gateway domain put", "FILE")
							if err != nil {
								return err
							}
							var d gateway.Domain
							body, err := readDefinition(c.Args().Get(2), &d)
							if err != nil {
								return err
							}
							return run(c, "PUT", path+waitQuery(c), body)
						}},
					{Name: "delete", ArgsUsage: "GATEWAY HOST", Usage: "remove a domain", Flags: flags(),
						Action: func(c *cli.Context) error {
							path, err := domainPath(c, "gateway domain delete")
							if err != nil {
								return err
							}
							return run(c, "DELETE", path+waitQuery(c), nil)
						}},
				}},
		},
	}
}

// readDefinition reads a gateway or domain from path ("-": stdin) in YAML or JSON (unknown
// fields refused) into v and returns it as JSON.
func readDefinition(path string, v any) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 8<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("read %s: %v", path, err), ExitUsage)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty")
		}
		return nil, cli.Exit(fmt.Sprintf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: ")), ExitUsage)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, cli.Exit(err.Error(), ExitDataErr)
	}
	return out, nil
}

// domainPath checks a domain command's arguments (GATEWAY HOST, then more) and returns the
// domain's API path.
func domainPath(c *cli.Context, cmd string, more ...string) (string, error) {
	if err := wantArgs(c, cmd, append([]string{"GATEWAY", "HOST"}, more...)...); err != nil {
		return "", err
	}
	name, err := gatewayArg(c, 0)
	if err != nil {
		return "", err
	}
	h, err := hostArg(c, 1)
	if err != nil {
		return "", err
	}
	return "/v1/gateways/" + url.PathEscape(name) + "/domains/" + url.PathEscape(h), nil
}

// gatewayArg is argument i, a gateway name.
func gatewayArg(c *cli.Context, i int) (string, error) {
	name := c.Args().Get(i)
	if err := gateway.ValidateGatewayName(name); err != nil {
		return "", cli.Exit(err.Error(), ExitUsage)
	}
	return name, nil
}

// hostArg is argument i, a domain's host name.
func hostArg(c *cli.Context, i int) (string, error) {
	h := c.Args().Get(i)
	if !gateway.ValidHost(h) {
		return "", cli.Exit(fmt.Sprintf("domain %q: want a lower-case host name without port", h), ExitUsage)
	}
	return h, nil
}

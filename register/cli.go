package register

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"clb/internal/auth"
	"clb/internal/model"
)

// DefaultClientConfig is the client configuration file read when the password, server or
// service is given nowhere else.
const DefaultClientConfig = "/etc/clb/client.conf"

// appOptions are the seams tests use; App passes the real environment.
type appOptions struct {
	lookupEnv    func(string) (string, bool)
	tune         func(*Client)
	clientConfig string
	// instanceData is cloud-init's instance data, read by --instance-id auto (default
	// DefaultInstanceData).
	instanceData string
}

// DefaultInstanceData is where cloud-init leaves the instance's metadata, world-readable
// (instance_id, availability_zone under "v1").
const DefaultInstanceData = "/run/cloud-init/instance-data.json"

// Main runs clb_register, or clb_unregister when the base name of args[0] contains
// "unregister", with the given arguments (args[0] is the program name) and returns the exit
// code. Usage errors print a one-line reason and return ExitUsage.
func Main(args []string, stdout, stderr io.Writer) int {
	name := "clb_register"
	if len(args) > 0 {
		if b := filepath.Base(args[0]); b != "." && b != string(filepath.Separator) {
			name = b
		}
	} else {
		args = []string{name}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runApp(ctx, App(name, strings.Contains(name, "unregister")), args, stdout, stderr)
}

// runApp runs app and turns its error into a message on stderr and an exit code.
func runApp(ctx context.Context, app *cli.App, args []string, stdout, stderr io.Writer) int {
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", app.Name, err)
	code := ExitCode(err)
	if code == ExitUsage {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", app.Name)
	}
	return code
}

// App returns the command-line program clb_register (or clb_unregister when unregister is
// true) of SPEC section 1, named name. Its Action returns *Error values; run it with
// ExitErrHandler left as set, so that it never calls os.Exit itself.
func App(name string, unregister bool) *cli.App {
	return newApp(name, unregister, appOptions{lookupEnv: os.LookupEnv, clientConfig: DefaultClientConfig})
}

func newApp(name string, unregister bool, o appOptions) *cli.App {
	verb, usage := "register", "register this machine as a member of a load-balanced service"
	if unregister {
		verb, usage = "unregister", "remove this machine from a load-balanced service"
	}
	return &cli.App{
		Name:  name,
		Usage: usage,
		UsageText: name + " [flags] PASSWORD CLB_SERVER SERVICE   (2010 form)\n" +
			name + " [flags] CLB_SERVER SERVICE\n" +
			name + " [--server URL] [--password-file F] [--service S] [flags]",
		Description: "Asks clbd to " + verb + " a member and waits until haproxy applies the change.\n" +
			"CLB_SERVER is HOST, HOST:PORT or an http(s) URL; the default port is " + strconv.Itoa(DefaultPort) + ".\n" +
			"Several load balancers sharing one membership: repeat --server or give a comma list (or a\n" +
			"name with several addresses); the first that applies the change ends the call.\n" +
			"The password comes from, in order: the PASSWORD argument (visible in the process list),\n" +
			"--password-file, $CLB_PASSWORD, or the client config (" + DefaultClientConfig + ", lines\n" +
			"'key = value' with keys password, server, service, key_id, ca, pin). The server and service may\n" +
			"also come from $CLB_SERVER and $CLB_SERVICE or the client config.\n\n" +
			"Exit codes: 0 applied, 1 refused by the server, 64 bad usage, 69 server unreachable or\n" +
			"unavailable, 75 accepted but not applied within the timeout, 77 authentication refused.",
		Flags:           flags(unregister, o.clientConfig),
		HideHelpCommand: true,
		HideVersion:     true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageErrorf("%v", err)
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			return action(c, unregister, o)
		},
	}
}

func flags(unregister bool, clientConfig string) []cli.Flag {
	ignored := ""
	if unregister {
		ignored = " (accepted and ignored by unregister)"
	}
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "server", Usage: "clbd API as `HOST[:PORT]` or URL; repeat it or give a comma list for load balancers sharing one membership (the first that applies the change wins); also $CLB_SERVER"},
		&cli.StringFlag{Name: "password-file", Usage: "read the password from `FILE`"},
		&cli.StringFlag{Name: "service", Usage: "service `NAME`; also $CLB_SERVICE"},
		&cli.StringFlag{Name: "address", DefaultText: "the source address clbd sees", Usage: "member `ADDRESS`"},
		&cli.IntFlag{Name: "port", DefaultText: "the service's member port", Usage: "member `PORT`"},
		&cli.StringFlag{Name: "name", DefaultText: "ADDRESS:PORT", Usage: "member `NAME`"},
		&cli.StringFlag{Name: "instance-id", Usage: "announce this machine to clbd's instance registry as instance `ID` (the AWS ELB API registers instances by id) and name the member ID; \"auto\" takes cloud-init's instance_id and availability_zone (none: no announcement); also $CLB_INSTANCE_ID" + ignored},
		&cli.StringFlag{Name: "zone", Usage: "availability `ZONE` of the member" + ignored},
		&cli.IntFlag{Name: "weight", DefaultText: "100", Usage: "`WEIGHT` 0-256; 0 takes the member out of rotation" + ignored},
		&cli.DurationFlag{Name: "timeout", Value: DefaultTimeout, Usage: "give up after `DURATION`, retries included"},
		&cli.DurationFlag{Name: "ttl", DefaultText: "none", Usage: "register a lease: clbd removes the member unless it registers again within `DURATION` (1s-24h; clbd's minimum is 5s unless configured)" + ignored},
		&cli.BoolFlag{Name: "keepalive", DisableDefaultText: true, Usage: "keep running: renew the --ttl lease every TTL/3 (retrying through clbd restarts), tell systemd READY=1 once registered, unregister on SIGTERM or SIGINT" + ignored},
		&cli.StringFlag{Name: "key-id", Value: auth.DefaultKeyID, Usage: "`ID` of the key the password belongs to; also $CLB_KEY_ID"},
		&cli.StringFlag{Name: "client-config", Value: clientConfig, Usage: "client config `FILE`"},
		&cli.StringFlag{Name: "ca", Usage: "verify clbd's TLS certificate with the CA certificates in `FILE` (PEM); implies https"},
		&cli.StringFlag{Name: "pin", Usage: "accept only the TLS certificate with this fingerprint, `sha256:HEX`; implies https"},
		&cli.StringFlag{Name: "cert", Usage: "client certificate `FILE` (PEM) for a clbd that requires one"},
		&cli.StringFlag{Name: "key", Usage: "private key `FILE` of --cert"},
		&cli.BoolFlag{Name: "insecure", DisableDefaultText: true, Usage: "allow plain http to a server that is not on this machine"},
	}
}

// invocation is everything a run needs, resolved from arguments, flags, environment and the
// client config.
type invocation struct {
	server  string
	service string
	keyID   string
	// instanceID, when set, is announced to clbd's instance registry before registering.
	instanceID string
	password   []byte
	req        Request
	tls        TLSOptions
}

func action(c *cli.Context, unregister bool, o appOptions) error {
	inv, err := resolve(c, o)
	if err != nil {
		return err
	}
	hc, err := inv.tls.HTTPClient()
	if err != nil {
		return &Error{Kind: KindUsage, Message: err.Error(), Err: err}
	}
	client := &Client{
		HTTPClient: hc,
		Server:     inv.server,
		KeyID:      inv.keyID,
		Key:        auth.DeriveKey(inv.password),
		Timeout:    c.Duration("timeout"),
		Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		})),
	}
	if o.tune != nil {
		o.tune(client)
	}
	if !unregister && inv.instanceID != "" {
		if err := client.AnnounceInstance(c.Context, inv.instanceID, inv.req.Address, inv.req.Zone); err != nil {
			return err
		}
	}
	if !unregister && c.Bool("keepalive") {
		return keepalive(c, client, inv)
	}
	var res Result
	if unregister {
		res, err = client.Unregister(c.Context, inv.service, inv.req)
	} else {
		res, err = client.Register(c.Context, inv.service, inv.req)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, describe(res, unregister))
	return nil
}

// resolve reads the invocation from, in order of precedence, the command line, the
// environment and the client config.
func resolve(c *cli.Context, o appOptions) (invocation, error) {
	var inv invocation
	env := func(k string) string {
		v, _ := o.lookupEnv(k)
		return strings.TrimSpace(v)
	}
	if c.IsSet("keepalive") && !c.IsSet("ttl") {
		return inv, usageErrorf("--keepalive needs --ttl")
	}
	if ttl := c.Duration("ttl"); c.IsSet("ttl") && (ttl == 0 || validateTTL(ttl) != nil) {
		return inv, usageErrorf("--ttl %v: want %s-%s", ttl, MinTTL, MaxTTL)
	}
	if c.Duration("timeout") <= 0 {
		return inv, usageErrorf("--timeout %v: want a positive duration", c.Duration("timeout"))
	}

	args := c.Args().Slice()
	for _, a := range args {
		if isFlag(c, a) {
			return inv, usageErrorf("flag %s after the arguments: flags must come first", a)
		}
	}
	var argPassword, argServer, argService string
	switch len(args) {
	case 0:
	case 2:
		argServer, argService = args[0], args[1]
	case 3:
		argPassword, argServer, argService = args[0], args[1], args[2]
		if strings.TrimSpace(argPassword) == "" {
			return inv, usageErrorf("the PASSWORD argument is empty")
		}
	default:
		return inv, usageErrorf("want PASSWORD CLB_SERVER SERVICE, CLB_SERVER SERVICE or no arguments, got %d argument(s)", len(args))
	}
	var err error
	if inv.server, err = pick("server", strings.Join(c.StringSlice("server"), ","), argServer); err != nil {
		return inv, err
	}
	if inv.service, err = pick("service", c.String("service"), argService); err != nil {
		return inv, err
	}
	if inv.server == "" {
		inv.server = env("CLB_SERVER")
	}
	if inv.service == "" {
		inv.service = env("CLB_SERVICE")
	}

	switch {
	case argPassword != "":
		inv.password = []byte(strings.TrimSpace(argPassword))
		fmt.Fprintf(c.App.ErrWriter, "%s: warning: a password given as an argument is visible in the process list; use --password-file, $CLB_PASSWORD or %s\n", c.App.Name, DefaultClientConfig)
	case c.IsSet("password-file"):
		if inv.password, err = auth.ReadPasswordFile(c.String("password-file")); err != nil {
			return inv, &Error{Kind: KindUsage, Message: err.Error(), Err: err}
		}
	case env("CLB_PASSWORD") != "":
		inv.password = []byte(env("CLB_PASSWORD"))
	}
	switch {
	case c.IsSet("key-id"):
		inv.keyID = c.String("key-id")
	case env("CLB_KEY_ID") != "":
		inv.keyID = env("CLB_KEY_ID")
	}

	// The client config fills in what is still missing; it is read only when needed, so an
	// unreadable config does not matter to a fully specified command line.
	inv.tls = TLSOptions{CAFile: c.String("ca"), Pin: c.String("pin"), CertFile: c.String("cert"), KeyFile: c.String("key")}
	if inv.password == nil || inv.server == "" || inv.service == "" || c.IsSet("client-config") || inv.tls.CAFile == "" && inv.tls.Pin == "" {
		path := c.String("client-config")
		cf, err := readClientConfig(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !c.IsSet("client-config"):
		case err != nil:
			return inv, &Error{Kind: KindUsage, Message: err.Error(), Err: err}
		}
		if inv.server == "" {
			inv.server = cf.server
		}
		if inv.service == "" {
			inv.service = cf.service
		}
		if inv.tls.CAFile == "" && inv.tls.Pin == "" {
			inv.tls.CAFile, inv.tls.Pin = cf.ca, cf.pin
		}
		if inv.password == nil && strings.TrimSpace(cf.password) != "" {
			inv.password = []byte(strings.TrimSpace(cf.password))
			if inv.keyID == "" {
				// A key id in the config belongs to the config's password.
				inv.keyID = cf.keyID
			}
		}
	}
	if inv.keyID == "" {
		inv.keyID = c.String("key-id")
	}

	switch {
	case inv.server == "":
		return inv, usageErrorf("no server: give CLB_SERVER as an argument or with --server, $CLB_SERVER or the client config")
	case inv.service == "":
		return inv, usageErrorf("no service: give SERVICE as an argument or with --service, $CLB_SERVICE or the client config")
	case inv.password == nil:
		return inv, usageErrorf("no password: give --password-file, set $CLB_PASSWORD or write it to %s", c.String("client-config"))
	}
	if err := auth.ValidateKeyID(inv.keyID); err != nil {
		return inv, usageErrorf("--key-id: %v", err)
	}
	if inv.server, err = checkServers(inv.server, inv.tls.CAFile != "" || inv.tls.Pin != "", c.Bool("insecure")); err != nil {
		return inv, usageErrorf("%v", err)
	}
	if inv.tls.Pin != "" {
		if _, err := ParsePin(inv.tls.Pin); err != nil {
			return inv, usageErrorf("--pin: %v", err)
		}
	}
	inv.req = Request{
		Name:    c.String("name"),
		Address: c.String("address"),
		Port:    c.Int("port"),
		Zone:    c.String("zone"),
		TTL:     c.Duration("ttl"),
	}
	if c.IsSet("port") {
		if err := model.ValidatePort(inv.req.Port); err != nil {
			return inv, usageErrorf("--port: %v", err)
		}
	}
	if c.IsSet("weight") {
		w := c.Int("weight")
		inv.req.Weight = &w
	}
	if err := resolveInstance(c, o, &inv, env("CLB_INSTANCE_ID")); err != nil {
		return inv, err
	}
	return inv, nil
}

// resolveInstance fills the instance id (--instance-id, else $CLB_INSTANCE_ID): "auto" reads
// cloud-init's instance data, whose availability zone becomes the zone unless --zone is
// given; a machine without cloud-init data registers without announcing an instance. The
// member is named by the instance id unless --name is given.
func resolveInstance(c *cli.Context, o appOptions, inv *invocation, fromEnv string) error {
	id := c.String("instance-id")
	if id == "" {
		id = fromEnv
	}
	if id == "auto" {
		path := o.instanceData
		if path == "" {
			path = DefaultInstanceData
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return usageErrorf("--instance-id auto: %v", err)
		}
		var doc struct {
			V1 struct {
				InstanceID       string `json:"instance_id"`
				AvailabilityZone string `json:"availability_zone"`
			} `json:"v1"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return usageErrorf("--instance-id auto: %s: %v", path, err)
		}
		id = doc.V1.InstanceID
		if id == "" {
			return usageErrorf("--instance-id auto: %s has no v1.instance_id", path)
		}
		if z := strings.ToLower(doc.V1.AvailabilityZone); inv.req.Zone == "" && z != "" && model.ValidateZone(z) == nil {
			inv.req.Zone = z
		}
	}
	if id == "" {
		return nil
	}
	if err := model.ValidateMemberName(id); err != nil {
		return usageErrorf("--instance-id: %v", err)
	}
	if err := model.ValidateZone(inv.req.Zone); err != nil {
		return usageErrorf("--zone: %v", err)
	}
	inv.instanceID = id
	if inv.req.Name == "" {
		inv.req.Name = id
	}
	return nil
}

// pick returns the one value given by flag or by argument, refusing two different ones.
func pick(what, flag, arg string) (string, error) {
	flag, arg = strings.TrimSpace(flag), strings.TrimSpace(arg)
	if flag != "" && arg != "" && flag != arg {
		return "", usageErrorf("%s given twice: --%s %q and argument %q", what, what, flag, arg)
	}
	if flag != "" {
		return flag, nil
	}
	return arg, nil
}

// isFlag reports whether a positional argument is one of the app's flags, which the flag
// parser leaves alone once the first argument has been seen.
func isFlag(c *cli.Context, a string) bool {
	if !strings.HasPrefix(a, "-") || a == "-" {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	if name == "h" || name == "help" {
		return true
	}
	for _, f := range c.App.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// describe is the one line printed on success.
func describe(res Result, unregister bool) string {
	m := res.Member
	who := m.Address
	if m.Address != "" && m.Port != 0 {
		who = net.JoinHostPort(m.Address, strconv.Itoa(m.Port))
	}
	switch {
	case who == "":
		who = m.Name
	case m.Name != "" && m.Name != model.DefaultName(m.Address, m.Port):
		who = m.Name + " (" + who + ")"
	}
	if who == "" {
		who = "this member"
	}
	if unregister {
		return fmt.Sprintf("unregistered %s from %s (applied)", who, res.Service)
	}
	return fmt.Sprintf("registered %s in %s (applied)", who, res.Service)
}

// clientConfig is the content of /etc/clb/client.conf.
type clientConfig struct {
	password string
	server   string
	service  string
	keyID    string
	ca       string
	pin      string
}

// readClientConfig reads a client config: "key = value" or "key: value" lines, '#' starting
// a comment line, values optionally in matching quotes. Unknown or repeated keys are errors.
func readClientConfig(path string) (clientConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return clientConfig{}, fmt.Errorf("read client config: %w", err)
	}
	defer f.Close()
	cf, err := parseClientConfig(f)
	if err != nil {
		return cf, fmt.Errorf("read client config %s: %w", path, err)
	}
	return cf, nil
}

func parseClientConfig(r io.Reader) (clientConfig, error) {
	var cf clientConfig
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			return cf, fmt.Errorf("line %d: want key = value", n)
		}
		key, val := strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		if seen[key] {
			return cf, fmt.Errorf("line %d: %s given twice", n, clip(key))
		}
		seen[key] = true
		switch key {
		case "password":
			cf.password = val
		case "server":
			cf.server = val
		case "service":
			cf.service = val
		case "key_id":
			cf.keyID = val
		case "ca":
			cf.ca = val
		case "pin":
			cf.pin = val
		default:
			return cf, fmt.Errorf("line %d: unknown key %q (want password, server, service, key_id, ca or pin)", n, clip(key))
		}
	}
	if err := sc.Err(); err != nil {
		return cf, err
	}
	return cf, nil
}

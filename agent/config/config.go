// Package config is clbd's configuration: the config file's contract (YAML, unknown keys
// refused), the built-in defaults, one step that fills per-setting defaults (SetDefaults), a
// pure check that changes nothing (Validate), and the one place where the config file's
// services and the services defined through the API are merged into the running config
// (Merge).
//
// Every value that can reach haproxy.cfg is checked here or in package model, so no input can
// add a line or a directive to the rendered config.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"clb/internal/gateway"
	"clb/internal/model"
)

// DefaultConfigPath is where clbd looks for its config file. When the file does not exist and
// --config was not given, the embedded default config is used (one http service "web").
const DefaultConfigPath = "/etc/clb/clbd.yaml"

//go:embed default.yaml
var defaultConfigYAML []byte

// DefaultConfigYAML returns the embedded default config file, for `clbd` with no config and
// for the packaged /etc/clb/clbd.yaml.
func DefaultConfigYAML() []byte { return slices.Clone(defaultConfigYAML) }

// Config is clbd's configuration: the config file, with flags laid over it.
type Config struct {
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel      string        `yaml:"log_level"`
	Output        string        `yaml:"output"`
	ReloadCmd     string        `yaml:"reload_cmd"`
	ReloadTimeout time.Duration `yaml:"reload_timeout"`
	StateDir      string        `yaml:"state_dir"`
	Templates     string        `yaml:"templates"`
	Haproxy       string        `yaml:"haproxy"`
	RuntimeSocket string        `yaml:"runtime_socket"`
	Managed       bool          `yaml:"managed"`
	PasswordFile  string        `yaml:"password_file"`
	KeysFile      string        `yaml:"keys_file"`
	// ApplyQuiet and ApplyMaxWait coalesce bursts of changes into one apply: the reconciler
	// waits until no change arrived for ApplyQuiet, but never longer than ApplyMaxWait.
	ApplyQuiet   time.Duration `yaml:"apply_quiet"`
	ApplyMaxWait time.Duration `yaml:"apply_max_wait"`
	// RequestTimeout bounds one API call, including the wait for the apply.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// LeaseMinTTL is the shortest lease (clb_register --ttl) clbd accepts, default 5s; a lapsed
	// lease is removed within LeaseCheckInterval (default 1s). See lease.go.
	LeaseMinTTL        time.Duration `yaml:"lease_min_ttl"`
	LeaseCheckInterval time.Duration `yaml:"lease_check_interval"`

	// TLSCert and TLSKey serve the API over TLS (files re-read when they change);
	// TLSClientCA, when set, requires client certificates signed by it.
	TLSCert     string `yaml:"tls_cert"`
	TLSKey      string `yaml:"tls_key"`
	TLSClientCA string `yaml:"tls_client_ca"`
	// AuthFailBurst failed authentications are allowed per source address, then one more every
	// AuthFailRefill; beyond that the source gets 429 until it has waited.
	AuthFailBurst  int           `yaml:"auth_fail_burst"`
	AuthFailRefill time.Duration `yaml:"auth_fail_refill"`
	// MaxMembers bounds the members of one service.
	MaxMembers int `yaml:"max_members"`
	// HaproxyMetricsListen, when set, makes haproxy serve its built-in Prometheus exporter
	// (GET /metrics) on this address: "HOST:PORT" with an IP address, or ":PORT" / "PORT" for
	// 127.0.0.1 (SetDefaults), so that it is not exposed unless asked for. Off by default:
	// haproxy labels servers by slot (s1, s2...), clbd's own /metrics by member name.
	HaproxyMetricsListen string `yaml:"haproxy_metrics_listen"`

	// AWSListen, when set, serves the AWS ELB (Classic, 2012-06-01) Query API on its own
	// listener (package awsapi), over TLS when the native API uses it. Off by default.
	AWSListen string `yaml:"aws_listen"`
	// AWSDNSName is the DNSName the ELB API gives a load balancer: "{name}" is replaced by
	// the load balancer's name. Empty: NAME.<host the client called>.
	AWSDNSName string `yaml:"aws_dns_name"`
	// AWSCertDir holds the certificates of the AWS API's HTTPS listeners: SSLCertificateId
	// NAME (or an ARN ending in /NAME) is the file AWSCertDir/NAME.pem (certificate, chain and
	// key, as haproxy reads them). Empty: HTTPS listeners are refused.
	AWSCertDir string `yaml:"aws_cert_dir"`

	// EruListen, when set, serves the Eru elb adapter (package eru: /__erulb__/domain,
	// /__erulb__/upstream, /__erulb__/dump) on its own listener. Off by default. Eru's
	// clients cannot sign requests, so only loopback clients may call it unless EruAllow
	// lists networks, and then EruListen may be a non-loopback address (eru.go).
	EruListen string `yaml:"eru_listen"`
	// EruAllow are the networks (CIDRs, or single addresses) whose clients may call the
	// Eru adapter besides loopback.
	EruAllow []string `yaml:"eru_allow"`
	// EruTokenFile, when set, holds a static token the Eru adapter's callers must send as
	// "Authorization: Bearer TOKEN" (read at every request, so it can be rotated).
	EruTokenFile string `yaml:"eru_token_file"`
	// EruGateway is the gateway of Eru domains named without a port; empty: the only
	// gateway there is.
	EruGateway string `yaml:"eru_gateway"`

	// Store is where the membership lives: the state dir (default) or etcd (storecfg.go).
	Store StoreConfig `yaml:"store"`

	Services map[string]Service `yaml:"services"`

	// Gateways are shared HTTP(S) listeners that route by host, path, user agent, headers
	// and method to the services' backends (package gateway, gateways.go). Their routes
	// change without a reload (map files); a new gateway, bind or header slot reloads.
	Gateways map[string]gateway.Gateway `yaml:"gateways"`
	// Launchers, LaunchConfigurations and Groups are the Auto Scaling groups (groups.go);
	// Autoscale tunes their controller.
	Launchers            map[string]Launcher            `yaml:"launchers"`
	LaunchConfigurations map[string]LaunchConfiguration `yaml:"launch_configurations"`
	Groups               map[string]Group               `yaml:"groups"`
	Autoscale            AutoscaleSettings              `yaml:"autoscale"`

	// DisabledZones by service: zones taken out of rotation through the API (kept in the state
	// dir, not in the config file).
	DisabledZones map[string][]string `yaml:"-"`
}

// Service is a load-balanced service: ELB's listeners, health check and policies.
type Service struct {
	Listeners   []Listener   `yaml:"listeners"`
	HealthCheck *HealthCheck `yaml:"health_check"`
	Balance     string       `yaml:"balance"`
	Sticky      bool         `yaml:"sticky"`
	// StickyCookie makes a sticky service follow the application's own session cookie
	// (ELB's app-cookie stickiness): haproxy prefixes the cookie's value with the member's
	// slot when a member sets it, routes the requests that carry it to that member and strips
	// the prefix before they reach it. Empty: haproxy's own session cookie CLBSRV.
	StickyCookie string `yaml:"sticky_cookie"`
	// StickyMaxAge is the lifetime of haproxy's CLBSRV cookie (ELB's LB-cookie
	// CookieExpirationPeriod), sent as Max-Age; 0 is a session cookie.
	StickyMaxAge    time.Duration `yaml:"sticky_max_age"`
	DrainingTimeout time.Duration `yaml:"draining_timeout"`
	// Slots is the fewest server slots each of the service's backends has (default 8): members
	// join and leave them without a reload; when they run out, a reload grows the pool to half
	// again what it needs. Size it for the members you expect to skip those reloads.
	Slots int `yaml:"slots"`
	// HTTPReuse is haproxy's http-reuse for the service's http backends: "safe" (haproxy's
	// default and recommendation, also when empty), "aggressive", "always" or "never". Under
	// safe, the first request of every client connection opens a backend connection of its
	// own, so clients that close after each request get no reuse; aggressive reuses only
	// connections that already carried two requests (which such clients never make); always
	// reuses for every request, and suits members that do not close idle connections within
	// a second or two of their last answer (see the README's "Connection reuse").
	HTTPReuse string `yaml:"http_reuse"`
}

// Listener maps a port on the load balancer to a port on the members. A listener of protocol
// "gateway" binds nothing: its backend (SERVICE_PORT, port naming it) is reached only through
// the routes of gateways (see gateways.go).
type Listener struct {
	Port       int    `yaml:"port" json:"port"`
	Address    string `yaml:"address" json:"address,omitempty"`
	Protocol   string `yaml:"protocol" json:"protocol"`
	MemberPort int    `yaml:"member_port" json:"member_port"`
	// Certificate is the PEM file (key and chain) of an https or ssl listener.
	Certificate string `yaml:"certificate" json:"certificate,omitempty"`
	// ProxyProtocol sends the PROXY protocol (v1) header to members on each connection, so
	// that they learn the client's address on tcp and ssl listeners (ELB's ProxyProtocol
	// policy); health checks send it too, since such members expect it on every connection.
	ProxyProtocol bool `yaml:"proxy_protocol" json:"proxy_protocol,omitempty"`
}

// HealthCheck is an ELB-style health check.
type HealthCheck struct {
	// Target is "HTTP:PORT/PATH" or "TCP:PORT".
	Target             string        `yaml:"target"`
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	HealthyThreshold   int           `yaml:"healthy_threshold"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold"`
}

// Defaults returns the built-in defaults of every setting (before the config file and flags).
func Defaults() Config {
	return Config{
		Listen:         ":8090",
		LogLevel:       "info",
		Output:         "/etc/haproxy/haproxy.cfg",
		ReloadTimeout:  30 * time.Second,
		StateDir:       "/var/lib/clb-server",
		Templates:      "/var/lib/clb-server/templates",
		Haproxy:        "haproxy",
		ApplyQuiet:     20 * time.Millisecond,
		ApplyMaxWait:   250 * time.Millisecond,
		RequestTimeout: 60 * time.Second,
	}
}

// LoadFile reads a config file over cfg. Unknown keys are an error.
func LoadFile(cfg *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return Decode(cfg, data, path)
}

// ErrEmpty is the error of a config file with nothing in it (empty, blanks or comments only):
// most likely a file caught in the middle of a rewrite, or truncated by mistake. Running on
// the built-in defaults instead would write /etc/haproxy/haproxy.cfg with nothing of the
// user's services.
var ErrEmpty = errors.New("config is empty: it must define at least one setting (services, listen, ...)")

// Decode decodes YAML config data over cfg, rejecting unknown keys and empty documents; name is
// used in errors.
func Decode(cfg *Config, data []byte, name string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: %w", name, ErrEmpty)
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
}

// MemberPort is the port a member registers with when it names none: the first listener's.
func (s Service) MemberPort() int { return s.Listeners[0].MemberPort }

// Files clbd keeps in its state dir.
const (
	LastGoodName     = "haproxy.cfg.last-good"
	ManagedCfgName   = "haproxy.cfg"
	AdminSocketName  = "haproxy-admin.sock"
	PasswordFileName = "password"
	ServerStateName  = "haproxy.state"
)

// OutputPath is where the rendered config goes: -o, or in managed mode the state dir unless
// -o was given.
func OutputPath(cfg *Config, outputSet bool) string {
	if cfg.Managed && !outputSet {
		return filepath.Join(cfg.StateDir, ManagedCfgName)
	}
	return cfg.Output
}

// PasswordPath is the password file clbd reads: password_file, or STATE_DIR/password when
// neither it nor a keys file is configured; "" when only a keys file is.
func PasswordPath(cfg *Config) string {
	switch {
	case cfg.PasswordFile != "":
		return cfg.PasswordFile
	case cfg.KeysFile == "":
		return filepath.Join(cfg.StateDir, PasswordFileName)
	}
	return ""
}

// AdminSocket is the haproxy admin socket clbd uses: its own in managed mode, runtime_socket
// in external mode ("" = none: every change reloads).
func (c *Config) AdminSocket() string {
	if c.Managed {
		return filepath.Join(c.StateDir, AdminSocketName)
	}
	return c.RuntimeSocket
}

// ServerStateFile is the server-state file haproxy reads after a reload; "" without an admin
// socket, which dumps it.
func (c *Config) ServerStateFile() string {
	if c.AdminSocket() == "" {
		return ""
	}
	return filepath.Join(c.StateDir, ServerStateName)
}

// BackendName is the name the built-in template gives the frontend and backend of a service's
// listener: SERVICE_PORT. It is the only place that builds it; nothing parses it back (the
// reconciler maps backends to services from the rendered servers, so user templates may name
// backends as they like).
func BackendName(service string, port int) string {
	return service + "_" + strconv.Itoa(port)
}

// Lease bounds: the shortest lease is configurable (lease_min_ttl, 1s at the least, for tests
// and very dynamic fleets), the longest is fixed.
const (
	DefaultLeaseMinTTL        = 5 * time.Second
	MaxLeaseTTL               = 24 * time.Hour
	DefaultLeaseCheckInterval = time.Second
)

// Defaults of the security settings.
const (
	// DefaultAuthFailBurst failed authentications are allowed from one source at once...
	DefaultAuthFailBurst = 10
	// ...and one more every DefaultAuthFailRefill after that.
	DefaultAuthFailRefill = 6 * time.Second
	// DefaultMaxMembers bounds the members of one service.
	DefaultMaxMembers = 10_000
)

// LeaseTTL parses the "ttl" of a registration; empty means a permanent member.
func (c *Config) LeaseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("ttl %q: want a duration such as \"30s\"", model.Clip(s, 40))
	}
	if d < c.LeaseMinTTL || d > MaxLeaseTTL {
		return 0, fmt.Errorf("ttl %s: want %s-%s", d, c.LeaseMinTTL, MaxLeaseTTL)
	}
	return d, nil
}

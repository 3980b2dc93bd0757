package agent

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
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
	Listen        string        `yaml:"listen"`
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

	// Store is where the membership lives: the state dir (default) or etcd (storecfg.go).
	Store StoreConfig `yaml:"store"`

	Services map[string]Service `yaml:"services"`

	// DisabledZones by service: zones taken out of rotation through the API (kept in the state
	// dir, not in the config file).
	DisabledZones map[string][]string `yaml:"-"`
}

// Service is a load-balanced service: ELB's listeners, health check and policies.
type Service struct {
	Listeners       []Listener    `yaml:"listeners"`
	HealthCheck     *HealthCheck  `yaml:"health_check"`
	Balance         string        `yaml:"balance"`
	Sticky          bool          `yaml:"sticky"`
	DrainingTimeout time.Duration `yaml:"draining_timeout"`
}

// Listener maps a port on the load balancer to a port on the members.
type Listener struct {
	Port        int    `yaml:"port" json:"port"`
	Address     string `yaml:"address" json:"address,omitempty"`
	Protocol    string `yaml:"protocol" json:"protocol"`
	MemberPort  int    `yaml:"member_port" json:"member_port"`
	Certificate string `yaml:"certificate" json:"certificate,omitempty"`
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

// Decode decodes YAML config data over cfg, rejecting unknown keys; name is used in errors.
func Decode(cfg *Config, data []byte, name string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
}

// ELB ranges for health checks.
const (
	minInterval  = 5 * time.Second
	maxInterval  = 600 * time.Second
	minThreshold = 2
	maxThreshold = 10
)

var balances = []string{"roundrobin", "leastconn", "first", "random", "source", "static-rr", "uri"}

// Validate checks the whole config and fills per-service defaults. Its errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state_dir is empty"))
	}
	if !c.Managed && c.Output == "" {
		errs = append(errs, errors.New("output is empty"))
	}
	errs = append(errs, c.validateSecurity()...)
	errs = append(errs, c.validateLeases()...)
	errs = append(errs, c.Store.validate()...)
	if c.ApplyQuiet < 0 || c.ApplyMaxWait < c.ApplyQuiet {
		errs = append(errs, fmt.Errorf("apply_quiet %s / apply_max_wait %s: want 0 <= quiet <= max wait", c.ApplyQuiet, c.ApplyMaxWait))
	}
	if c.ReloadTimeout <= 0 || c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("reload_timeout and request_timeout must be positive"))
	}
	binds := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		if err := svc.validate(name); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range svc.Listeners {
			key := l.Address + ":" + strconv.Itoa(l.Port)
			if other, ok := binds[key]; ok {
				errs = append(errs, fmt.Errorf("service %s: listener %s is already used by service %s", name, key, other))
			}
			binds[key] = name
		}
		c.Services[name] = svc
	}
	return errors.Join(errs...)
}

func (s *Service) validate(name string) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("service %s: "+format, append([]any{name}, args...)...)
	}
	if err := model.ValidateServiceName(name); err != nil {
		return err
	}
	if len(s.Listeners) == 0 {
		return fail("needs at least one listener")
	}
	ports := map[int]bool{}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		if l.Protocol == "" {
			l.Protocol = "http"
		}
		if err := model.ValidatePort(l.Port); err != nil {
			return fail("listener %d: %w", i, err)
		}
		if ports[l.Port] {
			return fail("listener %d: port %d listed twice", i, l.Port)
		}
		ports[l.Port] = true
		if l.MemberPort == 0 {
			l.MemberPort = l.Port
		}
		if err := model.ValidatePort(l.MemberPort); err != nil {
			return fail("listener %d: member_port: %w", i, err)
		}
		if l.Address != "" {
			if a, err := netip.ParseAddr(l.Address); err != nil || a.Zone() != "" {
				return fail("listener %d: address %q: want an IP address or empty for all", i, l.Address)
			}
		}
		switch l.Protocol {
		case "http", "tcp":
			if l.Certificate != "" {
				return fail("listener %d: certificate is only for protocol https", i)
			}
		case "https":
			if l.Certificate == "" {
				return fail("listener %d: protocol https needs certificate (a PEM file with key and chain)", i)
			}
			if !filepath.IsAbs(l.Certificate) || strings.ContainsAny(l.Certificate, " \t\r\n#\"'\\") {
				return fail("listener %d: certificate %q: want an absolute path without spaces, quotes or '#'", i, l.Certificate)
			}
		default:
			return fail("listener %d: protocol %q: want http, tcp or https", i, l.Protocol)
		}
	}
	if s.Balance == "" {
		s.Balance = "roundrobin"
	}
	if !slices.Contains(balances, s.Balance) {
		return fail("balance %q: want one of %s", s.Balance, strings.Join(balances, ", "))
	}
	if s.DrainingTimeout == 0 {
		s.DrainingTimeout = 30 * time.Second
	}
	if s.DrainingTimeout < 0 || s.DrainingTimeout > time.Hour {
		return fail("draining_timeout %s: want 0s-1h", s.DrainingTimeout)
	}
	if s.HealthCheck == nil {
		s.HealthCheck = &HealthCheck{}
	}
	if _, err := s.HealthCheck.parse(); err != nil {
		return fail("health_check: %w", err)
	}
	return nil
}

// parse fills defaults (ELB's: interval 30s, timeout 5s, healthy 3, unhealthy 5 — ELB's own
// default unhealthy threshold is 2; 5 is less twitchy and within ELB's range) and checks ranges.
func (h *HealthCheck) parse() (render.Check, error) {
	if h.Interval == 0 {
		h.Interval = 30 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = 5 * time.Second
	}
	if h.HealthyThreshold == 0 {
		h.HealthyThreshold = 3
	}
	if h.UnhealthyThreshold == 0 {
		h.UnhealthyThreshold = 5
	}
	c := render.Check{Interval: h.Interval, Timeout: h.Timeout, Rise: h.HealthyThreshold, Fall: h.UnhealthyThreshold, Host: "localhost"}
	if h.Interval < minInterval || h.Interval > maxInterval {
		return c, fmt.Errorf("interval %s: want 5s-600s", h.Interval)
	}
	if h.Timeout < time.Second || h.Timeout >= h.Interval {
		return c, fmt.Errorf("timeout %s: want at least 1s and less than the interval %s", h.Timeout, h.Interval)
	}
	for _, t := range []struct {
		name string
		v    int
	}{{"healthy_threshold", h.HealthyThreshold}, {"unhealthy_threshold", h.UnhealthyThreshold}} {
		if t.v < minThreshold || t.v > maxThreshold {
			return c, fmt.Errorf("%s %d: want %d-%d", t.name, t.v, minThreshold, maxThreshold)
		}
	}
	if h.Target == "" {
		return c, nil
	}
	proto, rest, ok := strings.Cut(h.Target, ":")
	if !ok {
		return c, fmt.Errorf("target %q: want HTTP:PORT/PATH or TCP:PORT", h.Target)
	}
	portStr, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		portStr, path = rest[:i], rest[i:]
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || model.ValidatePort(port) != nil {
		return c, fmt.Errorf("target %q: port %q: want 1-65535", h.Target, portStr)
	}
	c.Port = port
	switch strings.ToUpper(proto) {
	case "TCP":
		if path != "" {
			return c, fmt.Errorf("target %q: a TCP check takes no path", h.Target)
		}
	case "HTTP":
		if path == "" {
			path = "/"
		}
		if !validPath(path) {
			return c, fmt.Errorf("target %q: path %q: want printable ASCII without spaces, quotes, '#' or '\\'", h.Target, path)
		}
		c.HTTP, c.Path = true, path
	default:
		return c, fmt.Errorf("target %q: protocol %q: want HTTP or TCP", h.Target, proto)
	}
	return c, nil
}

func validPath(p string) bool {
	if len(p) > 1024 || !strings.HasPrefix(p, "/") {
		return false
	}
	for _, r := range p {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("#\"'\\", r) {
			return false
		}
	}
	return true
}

// MemberPort is the port a member registers with when it names none: the first listener's.
func (s Service) MemberPort() int { return s.Listeners[0].MemberPort }

// renderData builds the template data from a validated config and a state snapshot. Members of
// services the config does not define are kept in the state but not rendered.
//
// Ports: a member registers one port, used by the service's first listener; further listeners
// reach members on their own member_port (ELB's model: the listener says the instance port).
//
// d carries what does not come from the config: template source, sockets, state file.
func (c *Config) renderData(snap store.Snapshot, d render.Data) render.Data {
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		check, _ := svc.HealthCheck.parse() // validated already
		rs := render.Service{Name: name, Balance: svc.Balance, Sticky: svc.Sticky, Check: check}
		weights := zoneWeights(snap.Members[name], c.DisabledZones[name])
		for i, l := range svc.Listeners {
			mode := "http"
			if l.Protocol == "tcp" {
				mode = "tcp"
			}
			rl := render.Listener{
				Name: name + "_" + strconv.Itoa(l.Port), Address: l.Address, Port: l.Port,
				Protocol: l.Protocol, Mode: mode, Certificate: l.Certificate, MemberPort: l.MemberPort,
			}
			for _, m := range snap.Members[name] {
				port := l.MemberPort
				if i == 0 {
					port = m.Port
				}
				rl.Servers = append(rl.Servers, render.Server{Name: m.Name, Address: m.Address, Port: port, Weight: weights[m.Name], Zone: m.Zone})
			}
			rs.Listeners = append(rs.Listeners, rl)
		}
		d.Services = append(d.Services, rs)
	}
	return d
}

// zoneWeights returns the haproxy weight of each member. With members in one zone and no zone
// disabled, a member's weight is its registered weight. Otherwise traffic is spread evenly
// across the enabled zones whatever their member counts (ELB's promise): a member gets the
// share of its zone its weight gives it, scaled so the largest share is weight 256 (haproxy's
// maximum); members of disabled zones get 0 (no new requests; in-flight ones finish). The
// members without a zone count as one zone. Rounding to 1..256 makes the split approximate
// when a zone has more than ~50 members.
func zoneWeights(members []model.Member, disabled []string) map[string]int {
	out := make(map[string]int, len(members))
	zones := map[string]int{} // registered weight per zone
	for _, m := range members {
		out[m.Name] = m.Weight
		if !slices.Contains(disabled, m.Zone) {
			zones[m.Zone] += m.Weight
		}
	}
	seen := map[string]bool{}
	for _, m := range members {
		seen[m.Zone] = true
	}
	if len(seen) < 2 && len(disabled) == 0 {
		return out
	}
	share := func(m model.Member) float64 {
		if slices.Contains(disabled, m.Zone) || zones[m.Zone] == 0 {
			return 0
		}
		return float64(m.Weight) / float64(zones[m.Zone])
	}
	maxShare := 0.0
	for _, m := range members {
		maxShare = max(maxShare, share(m))
	}
	for _, m := range members {
		sh := share(m)
		if sh == 0 {
			out[m.Name] = 0
			continue
		}
		out[m.Name] = max(1, int(math.Round(model.MaxWeight*sh/maxShare)))
	}
	return out
}

package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/internal/model"
)

// ELB ranges for health checks.
const (
	minInterval  = 5 * time.Second
	maxInterval  = 600 * time.Second
	minThreshold = 2
	maxThreshold = 10
)

var httpReuses = []string{"", "safe", "aggressive", "always", "never"}

var balances = []string{"roundrobin", "leastconn", "first", "random", "source", "static-rr", "uri"}

// Validate checks a config whose defaults are filled (SetDefaults) and changes nothing. Its
// errors name the setting; all of them are reported at once.
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
	errs = append(errs, c.validateGroups()...)
	if c.LogLevel != "" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
			errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", model.Clip(c.LogLevel, 40)))
		}
	}
	if c.ApplyQuiet < 0 || c.ApplyMaxWait < c.ApplyQuiet {
		errs = append(errs, fmt.Errorf("apply_quiet %s / apply_max_wait %s: want 0 <= quiet <= max wait", c.ApplyQuiet, c.ApplyMaxWait))
	}
	if c.ReloadTimeout <= 0 || c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("reload_timeout and request_timeout must be positive"))
	}
	metrics, err := c.metricsAddr()
	if err != nil {
		errs = append(errs, err)
	}
	binds := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		if err := svc.Validate(name); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range svc.Listeners {
			if l.Protocol == ProtocolGateway {
				continue // binds nothing
			}
			if metrics.IsValid() && int(metrics.Port()) == l.Port && (l.Address == "" || isWildcard(l.Address) || metrics.Addr().IsUnspecified() || l.Address == metrics.Addr().String()) {
				errs = append(errs, fmt.Errorf("haproxy_metrics_listen %s: service %s listens on port %d there", metrics, name, l.Port))
			}
			key := l.Address + ":" + strconv.Itoa(l.Port)
			if other, ok := binds[key]; ok {
				errs = append(errs, fmt.Errorf("service %s: listener %s is already used by service %s", name, key, other))
			}
			binds[key] = name
		}
	}
	errs = append(errs, c.validateGateways(binds)...)
	return errors.Join(errs...)
}

// Validate checks one service whose defaults are filled; it changes nothing.
func (s *Service) Validate(name string) error {
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
		l := s.Listeners[i]
		if err := model.ValidatePort(l.Port); err != nil {
			return fail("listener %d: %w", i, err)
		}
		if ports[l.Port] {
			return fail("listener %d: port %d listed twice", i, l.Port)
		}
		ports[l.Port] = true
		if err := model.ValidatePort(l.MemberPort); err != nil {
			return fail("listener %d: member_port: %w", i, err)
		}
		if l.Address != "" {
			if a, err := netip.ParseAddr(l.Address); err != nil || a.Zone() != "" {
				return fail("listener %d: address %q: want an IP address or empty for all", i, l.Address)
			}
		}
		switch l.Protocol {
		case "http", "tcp", ProtocolGateway:
			if l.Certificate != "" {
				return fail("listener %d: certificate is only for protocols https and ssl", i)
			}
		case "https", "ssl":
			if l.Certificate == "" {
				return fail("listener %d: protocol %s needs certificate (a PEM file with key and chain)", i, l.Protocol)
			}
			if !filepath.IsAbs(l.Certificate) || strings.ContainsAny(l.Certificate, " \t\r\n#\"'\\") {
				return fail("listener %d: certificate %q: want an absolute path without spaces, quotes or '#'", i, l.Certificate)
			}
		default:
			return fail("listener %d: protocol %q: want http, https, tcp, ssl or gateway", i, l.Protocol)
		}
	}
	if !slices.Contains(balances, s.Balance) {
		return fail("balance %q: want one of %s", s.Balance, strings.Join(balances, ", "))
	}
	if s.DrainingTimeout < 0 || s.DrainingTimeout > time.Hour {
		return fail("draining_timeout %s: want 0s-1h", s.DrainingTimeout)
	}
	if s.StickyCookie != "" {
		if !s.Sticky {
			return fail("sticky_cookie %q needs sticky: true", model.Clip(s.StickyCookie, 64))
		}
		if !ValidCookieName(s.StickyCookie) {
			return fail("sticky_cookie %q: want 1-128 of A-Z a-z 0-9 and !#$%%&'*+-.^_`|~ (a cookie name)", model.Clip(s.StickyCookie, 64))
		}
		if s.StickyMaxAge != 0 {
			return fail("sticky_max_age is for haproxy's own cookie; with sticky_cookie the application's cookie sets the lifetime")
		}
	}
	if s.StickyMaxAge < 0 || s.StickyMaxAge%time.Second != 0 || s.StickyMaxAge > 10*365*24*time.Hour {
		return fail("sticky_max_age %s: want whole seconds, 0 (a session cookie) to 10 years", s.StickyMaxAge)
	}
	if s.StickyMaxAge != 0 && !s.Sticky {
		return fail("sticky_max_age needs sticky: true")
	}
	if !slices.Contains(httpReuses, s.HTTPReuse) {
		return fail("http_reuse %q: want one of safe, aggressive, always, never (empty: safe)", s.HTTPReuse)
	}
	if s.Slots < 0 || s.Slots > MaxSlots {
		return fail("slots %d: want 0 (the default, 8) to %d", s.Slots, MaxSlots)
	}
	if s.HealthCheck == nil {
		return fail("health_check: not filled (SetDefaults)")
	}
	if err := s.HealthCheck.Validate(); err != nil {
		return fail("health_check: %w", err)
	}
	return nil
}

// Target is a parsed health check target.
type Target struct {
	// HTTP is true for an HTTP GET check, false for a TCP connect check.
	HTTP bool
	// Port is the port checked on members; 0 means the member's own port.
	Port int
	// Path is the HTTP path (HTTP checks only).
	Path string
}

// Validate checks the ranges (ELB's) and the target of a health check whose defaults are
// filled; it changes nothing.
func (h HealthCheck) Validate() error {
	if h.Interval < minInterval || h.Interval > maxInterval {
		return fmt.Errorf("interval %s: want 5s-600s", h.Interval)
	}
	if h.Timeout < time.Second || h.Timeout >= h.Interval {
		return fmt.Errorf("timeout %s: want at least 1s and less than the interval %s", h.Timeout, h.Interval)
	}
	for _, t := range []struct {
		name string
		v    int
	}{{"healthy_threshold", h.HealthyThreshold}, {"unhealthy_threshold", h.UnhealthyThreshold}} {
		if t.v < minThreshold || t.v > maxThreshold {
			return fmt.Errorf("%s %d: want %d-%d", t.name, t.v, minThreshold, maxThreshold)
		}
	}
	_, err := h.ParseTarget()
	return err
}

// ParseTarget parses Target: "HTTP:PORT/PATH", "TCP:PORT", or empty for a TCP check on the
// member's own port.
func (h HealthCheck) ParseTarget() (Target, error) {
	var t Target
	if h.Target == "" {
		return t, nil
	}
	proto, rest, ok := strings.Cut(h.Target, ":")
	if !ok {
		return t, fmt.Errorf("target %q: want HTTP:PORT/PATH or TCP:PORT", h.Target)
	}
	portStr, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		portStr, path = rest[:i], rest[i:]
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || model.ValidatePort(port) != nil {
		return t, fmt.Errorf("target %q: port %q: want 1-65535", h.Target, portStr)
	}
	t.Port = port
	switch strings.ToUpper(proto) {
	case "TCP":
		if path != "" {
			return t, fmt.Errorf("target %q: a TCP check takes no path", h.Target)
		}
	case "HTTP":
		if path == "" {
			path = "/"
		}
		if !validPath(path) {
			return t, fmt.Errorf("target %q: path %q: want printable ASCII without spaces, quotes, '#' or '\\'", h.Target, path)
		}
		t.HTTP, t.Path = true, path
	default:
		return t, fmt.Errorf("target %q: protocol %q: want HTTP or TCP", h.Target, proto)
	}
	return t, nil
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

// validateSecurity checks the security settings.
func (c *Config) validateSecurity() []error {
	var errs []error
	if c.AuthFailBurst < 1 || c.AuthFailBurst > 1_000_000 {
		errs = append(errs, fmt.Errorf("auth_fail_burst %d: want 1-1000000", c.AuthFailBurst))
	}
	if c.AuthFailRefill < time.Millisecond || c.AuthFailRefill > 24*time.Hour {
		errs = append(errs, fmt.Errorf("auth_fail_refill %s: want 1ms-24h", c.AuthFailRefill))
	}
	if c.MaxMembers < 1 || c.MaxMembers > 1_000_000 {
		errs = append(errs, fmt.Errorf("max_members %d: want 1-1000000", c.MaxMembers))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key: give both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("tls_client_ca needs tls_cert and tls_key"))
	}
	for _, f := range []struct{ key, path string }{
		{"keys_file", c.KeysFile}, {"password_file", c.PasswordFile}, {"tls_cert", c.TLSCert},
		{"tls_key", c.TLSKey}, {"tls_client_ca", c.TLSClientCA}, {"state_dir", c.StateDir},
		{"templates", c.Templates}, {"output", c.Output}, {"runtime_socket", c.RuntimeSocket}, {"aws_cert_dir", c.AWSCertDir},
		{"eru_token_file", c.EruTokenFile},
	} {
		if err := validFilePath(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	if c.Listen != "" {
		if err := validListen(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", clipText(c.Listen), err))
		}
	}
	if c.AWSListen != "" {
		if err := validListen(c.AWSListen); err != nil {
			errs = append(errs, fmt.Errorf("aws_listen %q: %w", clipText(c.AWSListen), err))
		} else if c.AWSListen == c.Listen {
			errs = append(errs, fmt.Errorf("aws_listen %q: the native API listens there; give the AWS API its own port", clipText(c.AWSListen)))
		}
	}
	errs = append(errs, c.validateEru()...)
	if len(c.AWSDNSName) > 253 || strings.ContainsAny(c.AWSDNSName, " \t\r\n<>&\"'") {
		errs = append(errs, fmt.Errorf("aws_dns_name %q: want a host name pattern with {name}", clipText(c.AWSDNSName)))
	}
	return errs
}

// validFilePath refuses paths that cannot be meant: control characters (a newline in a path
// would also be a new line wherever the path is rendered), or too long.
func validFilePath(p string) error {
	if len(p) > 4096 {
		return errors.New("path longer than 4096 bytes")
	}
	for _, r := range p {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("path %q contains a control character", clipText(p))
		}
	}
	return nil
}

// validListen accepts HOST:PORT with an IP address or host name (or nothing, for all
// addresses) and a port 0-65535 (0: any free port).
func validListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT, [IPv6]:PORT or :PORT")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("port %q: want 0-65535", clipText(port))
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("host %q: want an IP address or a host name", clipText(host))
		}
	}
	return nil
}

func clipText(s string) string { return model.Clip(s, 80) }

// validateLeases checks the lease settings.
func (c *Config) validateLeases() []error {
	var errs []error
	if c.LeaseMinTTL < time.Second || c.LeaseMinTTL > MaxLeaseTTL {
		errs = append(errs, fmt.Errorf("lease_min_ttl %s: want 1s-%s", c.LeaseMinTTL, MaxLeaseTTL))
	}
	if c.LeaseCheckInterval < 100*time.Millisecond || c.LeaseCheckInterval > time.Minute {
		errs = append(errs, fmt.Errorf("lease_check_interval %s: want 100ms-1m", c.LeaseCheckInterval))
	}
	return errs
}

// metricsAddr checks haproxy_metrics_listen (defaults filled): an IP address and a port, the
// zero AddrPort when unset.
func (c *Config) metricsAddr() (netip.AddrPort, error) {
	if c.HaproxyMetricsListen == "" {
		return netip.AddrPort{}, nil
	}
	ap, err := netip.ParseAddrPort(c.HaproxyMetricsListen)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("haproxy_metrics_listen %q: want IP:PORT (e.g. 127.0.0.1:9101), or :PORT for the loopback address", model.Clip(c.HaproxyMetricsListen, 60))
	}
	return ap, nil
}

func isWildcard(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.IsUnspecified()
}

// ValidCookieName reports whether s is a cookie name (an RFC 6265 token) of at most 128 bytes.
func ValidCookieName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Package render turns clbd's services and members into haproxy.cfg text with a Go
// text/template: the built-in one (package templates) or the user's haproxy.tmpl.
//
// Every value in Data has been validated before it gets here (package model and the agent's
// config validation), so the template needs no escaping: no name, address or path can hold a
// newline, a space or a '#'.
package render

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"clb/internal/haproxy"
	"clb/templates"
)

// Data is what a template sees.
type Data struct {
	// TemplateSource names the template in use ("built-in" or its path).
	TemplateSource string
	// AdminSocket is the haproxy stats socket (level admin) path, empty when none.
	AdminSocket string
	// ServerStateFile is where clbd saves server states before a reload, empty when none.
	ServerStateFile string
	// MetricsListen is where haproxy serves its built-in Prometheus exporter
	// (haproxy_metrics_listen, validated IP:PORT), empty when off.
	MetricsListen string
	// Services sorted by name.
	Services []Service
	// GatewayConfig is the gateways' sections (their frontends and the backends of fixed
	// statuses), rendered from the gateway package's fixed scaffold; "" without gateways.
	// Route changes change only the map files it reads (Maps), so that they apply without a
	// reload.
	GatewayConfig string
	// Maps are the gateways' map files (absolute path → content), written next to the
	// output before haproxy reads them; not part of the template.
	Maps map[string]MapFile
	// Certs are the https gateways' certificates (validated), written into their
	// directories before haproxy reads the crt-lists; not part of the template.
	Certs []CertSet
}

// CertSet is one https gateway's certificates: the directory holding clb's copies and the
// crt-list the gateway's bind reads (haproxy.CertDir), and each domain's PEM.
type CertSet struct {
	Dir  haproxy.CertDir
	PEMs map[string][]byte
	// Warnings are the certificates' validation warnings, and the domains whose certificate
	// could not be read or was refused (they keep their last good one or get the default).
	Warnings []string
}

// MapFile is one haproxy map file: its ordered entries (what the runtime API loads) and the
// file's bytes (what a reload reads), the same thing twice.
type MapFile struct {
	Entries []haproxy.MapEntry
	Bytes   []byte
}

// Service is one load-balanced service.
type Service struct {
	Name    string
	Balance string
	Sticky  bool
	// StickyCookie is the application cookie a sticky service follows ("": haproxy's own
	// CLBSRV); StickyMaxAge the lifetime of CLBSRV in seconds (0: a session cookie).
	StickyCookie string
	StickyMaxAge int
	// HTTPReuse is the http-reuse mode of the service's http backends ("": haproxy's default).
	HTTPReuse string
	Check     Check
	Listeners []Listener
}

// Check is the ELB-style health check of a service, in haproxy terms.
type Check struct {
	// HTTP is true for an HTTP GET check, false for a TCP connect check.
	HTTP bool
	// Port is the port checked on members; 0 means the member's own port.
	Port int
	// Path is the HTTP path (HTTP checks only).
	Path string
	// Host is the Host header of HTTP checks.
	Host     string
	Interval time.Duration
	Timeout  time.Duration
	// Rise and Fall are the healthy and unhealthy thresholds.
	Rise int
	Fall int
}

// Listener is one frontend (and its backend) of a service.
type Listener struct {
	// Name is the frontend and backend name: service_port.
	Name     string
	Address  string
	Port     int
	Protocol string
	// Mode is haproxy's mode: http (for http and https listeners) or tcp.
	Mode        string
	Certificate string
	MemberPort  int
	// ProxyProtocol sends the PROXY v1 header to members (send-proxy, check-send-proxy).
	ProxyProtocol bool
	// Servers are the members, one each.
	Servers []Server
	// Slots are the backend's server slots: the members in the slots clbd gave them, and free
	// slots (Free, on a placeholder address) for members to come. The built-in template
	// renders these, so that a member joins or leaves by `set server` on a static server
	// (connections reused, no reload); a template that renders Servers instead gets dynamic
	// servers (`add server`, no reuse of backend connections on haproxy 2.6).
	Slots []Slot
}

// Bind is the bind address: "[addr]:port", "addr:port" or ":port".
func (l Listener) Bind() string {
	return hostPort(l.Address, l.Port)
}

// Server is one member as a haproxy server of one listener's backend.
type Server struct {
	Name    string
	Address string
	Port    int
	Weight  int
	Zone    string
}

// Addr is the server address as haproxy wants it.
func (s Server) Addr() string {
	return hostPort(s.Address, s.Port)
}

// Slot is one static server of a backend: a member's, or free.
type Slot struct {
	// Name is haproxy's server name (s1, s2, ...) and its sticky cookie value.
	Name string
	// Member is the member's name ("" when Free); the built-in template writes it as a
	// comment on the server line, from which clbd learns the slots again after a restart.
	Member string
	// Free: no member; rendered disabled on FreeAddress.
	Free    bool
	Address string
	Port    int
	Weight  int
	Zone    string
}

// FreeAddress and FreePort are where a free slot points: never used (the slot is disabled),
// and valid for haproxy -c.
const (
	FreeAddress = "127.0.0.1"
	FreePort    = 1
)

// Addr is the slot's address as haproxy wants it.
func (s Slot) Addr() string {
	return hostPort(s.Address, s.Port)
}

func hostPort(addr string, port int) string {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}

// BuiltIn is the TemplateSource of the embedded template.
const BuiltIn = "built-in template"

var funcs = template.FuncMap{
	// ms writes a duration in haproxy's millisecond syntax.
	"ms": func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" },
}

// Parse parses template text; name is used in error messages.
func Parse(name, text string) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	return t, nil
}

// Load returns the template of dir/haproxy.tmpl, or the built-in template when dir is empty or
// holds no such file, with its source for TemplateSource.
func Load(dir string) (*template.Template, string, error) {
	if dir != "" {
		path := filepath.Join(dir, templates.Name)
		text, err := os.ReadFile(path)
		switch {
		case err == nil:
			t, err := Parse(path, string(text))
			return t, path, err
		case !os.IsNotExist(err):
			return nil, path, fmt.Errorf("read template: %w", err)
		}
	}
	t, err := Parse(BuiltIn, templates.Default)
	return t, BuiltIn, err
}

// Render executes t with d.
func Render(t *template.Template, d Data) ([]byte, error) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("render %s: %w", t.Name(), err)
	}
	return buf.Bytes(), nil
}

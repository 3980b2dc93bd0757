package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"

	"clb/internal/gateway"
)

// ProtocolGateway is the listener protocol of a service that is reached only through
// gateways: the listener gets an http backend (named SERVICE_PORT like any other, the port
// only naming it) and no frontend or bind of its own. A service may also be reached both
// ways: routes may target its http and https listeners too (their backends are http).
const ProtocolGateway = "gateway"

// Targets answers, for the gateway package, the haproxy backend of a service's listener from
// this config: gateway.Targets over Services.
func (c *Config) Targets() gateway.Targets { return targets{c} }

type targets struct{ c *Config }

// Backend is the backend of service's listener on port, or of its only http-mode listener
// (http, https or gateway) when port is 0. Unknown services, ports and tcp listeners wrap
// gateway.ErrUnknownService.
func (t targets) Backend(service string, port int) (string, error) {
	svc, ok := t.c.Services[service]
	if !ok {
		return "", fmt.Errorf("service %q: %w", service, gateway.ErrUnknownService)
	}
	var found []Listener
	for _, l := range svc.Listeners {
		if l.Protocol == "tcp" || (port != 0 && l.Port != port) {
			continue
		}
		found = append(found, l)
	}
	switch {
	case len(found) == 1:
		return BackendName(service, found[0].Port), nil
	case len(found) == 0 && port != 0:
		return "", fmt.Errorf("service %q has no http listener on port %d: %w", service, port, gateway.ErrUnknownService)
	case len(found) == 0:
		return "", fmt.Errorf("service %q has no http listener (tcp listeners cannot be routed to): %w", service, gateway.ErrUnknownService)
	}
	return "", fmt.Errorf("%w: service %q has %d http listeners: the route must name one with port", gateway.ErrInvalid, service, len(found))
}

// ValidateGateway checks one gateway against this config's services (routes to a service it
// does not define wrap gateway.ErrUnknownService) and returns the gateway package's warnings
// (shadowed routes, ...). It does not check binds against other listeners: Validate does.
func (c *Config) ValidateGateway(name string, g gateway.Gateway) ([]string, error) {
	return gateway.Validate(name, g, c.Targets()) // its errors name the gateway
}

// validateGateways checks every gateway and that no two listeners (services' and gateways')
// bind the same address and port; binds holds the services' listeners (ADDR:PORT → service).
func (c *Config) validateGateways(binds map[string]string) []error {
	var errs []error
	type bound struct {
		addr netip.Addr // invalid: all addresses
		port int
		who  string
	}
	var all []bound
	for key, svc := range binds {
		host, port, _ := net.SplitHostPort(key)
		p, _ := strconv.Atoi(port)
		a, _ := netip.ParseAddr(host)
		all = append(all, bound{a, p, "service " + svc})
	}
	for _, name := range slices.Sorted(maps.Keys(c.Gateways)) {
		g := c.Gateways[name]
		if _, err := c.ValidateGateway(name, g); err != nil {
			errs = append(errs, err)
			continue
		}
		addr, port, err := SplitBind(g.Bind)
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway %s: %w", name, err))
			continue
		}
		for _, b := range all {
			if b.port == port && (!b.addr.IsValid() || !addr.IsValid() || b.addr.IsUnspecified() || addr.IsUnspecified() || b.addr == addr) {
				errs = append(errs, fmt.Errorf("gateway %s: bind %s is already used by %s", name, g.Bind, b.who))
			}
		}
		all = append(all, bound{addr, port, "gateway " + name})
	}
	return errs
}

// SplitBind parses a gateway's bind, "ADDR:PORT", ":PORT" or "[V6]:PORT"; the address is
// invalid (the zero netip.Addr) for all addresses.
func SplitBind(bind string) (netip.Addr, int, error) {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bind %q: want ADDRESS:PORT, :PORT or [IPV6]:PORT", bind)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return netip.Addr{}, 0, fmt.Errorf("bind %q: port: want 1-65535", bind)
	}
	if host == "" {
		return netip.Addr{}, p, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, 0, fmt.Errorf("bind %q: want an IP address (or none for all)", bind)
	}
	return a, p, nil
}

// MapDirName is the directory, beside haproxy.cfg, of the gateways' map files.
const MapDirName = "clb-maps"

// CertDirName is the directory, beside haproxy.cfg, of the https gateways' certificates:
// CertDirName/GATEWAY holds clb's validated copies of its domains' PEMs, a default
// certificate and the crt-list its bind reads.
const CertDirName = "clb-certs"

// CertDir is where the https gateways' certificate directories of the config installed at
// output live, beside it (see CertDirName).
func CertDir(output string) string { return filepath.Join(filepath.Dir(MapDir(output)), CertDirName) }

// MapDir is where the map files of the config installed at output live: next to it, so that
// a reload reads them with the config (clbd writes them, atomically, before haproxy does).
func MapDir(output string) string {
	dir, err := filepath.Abs(filepath.Dir(output))
	if err != nil {
		dir = filepath.Dir(output)
	}
	return filepath.Join(dir, MapDirName)
}

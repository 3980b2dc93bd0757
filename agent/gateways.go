package agent

import (
	"errors"
	"fmt"
	"maps"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/gateway"
	"clb/internal/haproxy"
)

// The core's side of gateways (api.Gateways): every front that defines gateways or domains
// (the native API, the Eru adapter) calls these. A change is checked against the running
// config first (bad input wraps gateway.ErrInvalid, a route to an unknown service
// gateway.ErrUnknownService: nothing is saved), then saved and made the running config like
// a service definition (changeDefs: a bind taken by another listener is undone and refused
// with defs.ErrInvalid). The caller then asks the reconciler to apply it: a change of
// domains only reaches haproxy through its maps, without a reload.

// fileGatewaysOf returns a config file's gateways, never nil.
func fileGatewaysOf(c *config.Config) map[string]gateway.Gateway {
	if c.Gateways == nil {
		return map[string]gateway.Gateway{}
	}
	return c.Gateways
}

// IsFileGateway reports whether a gateway comes from the config file (the API may not
// change it).
func (a *Agent) IsFileGateway(name string) bool {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	_, ok := a.fileGateways[name]
	return ok
}

// PutGateway defines or replaces a gateway (its domains included) through the API and
// returns the validation's warnings.
func (a *Agent) PutGateway(name string, g gateway.Gateway) ([]string, error) {
	if a.IsFileGateway(name) {
		return nil, fmt.Errorf("gateway %s: %w; change it there", name, defs.ErrFileGateway)
	}
	warns, err := a.config().ValidateGateway(name, g)
	if err != nil {
		return nil, invalid(err)
	}
	cw, err := checkCerts(g, g.Domains)
	if err != nil {
		return nil, err
	}
	warns = append(warns, cw...)
	return warns, a.changeDefs(func(f *defs.File) error {
		f.Gateways[name] = g
		return nil
	})
}

// RemoveGateway removes a gateway defined through the API, with its domains.
func (a *Agent) RemoveGateway(name string) error {
	if a.IsFileGateway(name) {
		return fmt.Errorf("gateway %s: %w; remove it there", name, defs.ErrFileGateway)
	}
	return a.changeDefs(func(f *defs.File) error {
		if _, ok := f.Gateways[name]; !ok {
			return fmt.Errorf("gateway %q: %w", name, defs.ErrNoGateway)
		}
		delete(f.Gateways, name)
		return nil
	})
}

// PutDomain defines or replaces one domain of a gateway defined through the API and returns
// the validation's warnings. The gateway's other domains are untouched, also when another
// node changes them at the same time (etcd: the change is applied to the current document).
func (a *Agent) PutDomain(gw, host string, d gateway.Domain) ([]string, error) {
	if a.IsFileGateway(gw) {
		return nil, fmt.Errorf("gateway %s: %w; change its domains there", gw, defs.ErrFileGateway)
	}
	cfg := a.config()
	g, ok := cfg.Gateways[gw]
	if !ok {
		return nil, fmt.Errorf("gateway %q: %w", gw, defs.ErrNoGateway)
	}
	warns, err := gateway.ValidateDomain(host, d, g, cfg.Targets())
	if err != nil {
		return nil, invalid(fmt.Errorf("gateway %s, domain %s: %w", gw, host, err))
	}
	cw, err := checkCerts(g, map[string]gateway.Domain{host: d})
	if err != nil {
		return nil, err
	}
	warns = append(warns, cw...)
	return warns, a.changeDefs(func(f *defs.File) error {
		g, ok := f.Gateways[gw]
		if !ok {
			return fmt.Errorf("gateway %q: %w", gw, defs.ErrNoGateway)
		}
		g.Domains = maps.Clone(g.Domains)
		if g.Domains == nil {
			g.Domains = map[string]gateway.Domain{}
		}
		g.Domains[host] = d
		f.Gateways[gw] = g
		return nil
	})
}

// RemoveDomain removes one domain of a gateway defined through the API.
func (a *Agent) RemoveDomain(gw, host string) error {
	if a.IsFileGateway(gw) {
		return fmt.Errorf("gateway %s: %w; change its domains there", gw, defs.ErrFileGateway)
	}
	return a.changeDefs(func(f *defs.File) error {
		g, ok := f.Gateways[gw]
		if !ok {
			return fmt.Errorf("gateway %q: %w", gw, defs.ErrNoGateway)
		}
		if _, ok := g.Domains[host]; !ok {
			return fmt.Errorf("gateway %s: domain %q: %w", gw, host, defs.ErrNoGateway)
		}
		g.Domains = maps.Clone(g.Domains)
		delete(g.Domains, host)
		f.Gateways[gw] = g
		return nil
	})
}

// checkCerts reads and validates the certificates of domains of an https gateway (their
// own file, else the gateway's certificates directory) before anything is saved: a missing
// or refused one is bad input. It returns the validation's warnings.
func checkCerts(g gateway.Gateway, domains map[string]gateway.Domain) ([]string, error) {
	if g.Protocol != "https" || len(domains) == 0 {
		return nil, nil
	}
	own := make(map[string]string, len(domains))
	for host, d := range domains {
		own[host] = d.Certificate
	}
	_, warns, err := haproxy.LoadCerts(haproxy.CertSources(g.Certificates, own), time.Now())
	if err != nil {
		return nil, invalid(err)
	}
	return warns, nil
}

// invalid makes sure a validation error says what it is: bad input (gateway.ErrInvalid)
// unless it names an unknown service.
func invalid(err error) error {
	if errors.Is(err, gateway.ErrInvalid) || errors.Is(err, gateway.ErrUnknownService) {
		return err
	}
	return fmt.Errorf("%w: %w", gateway.ErrInvalid, err)
}

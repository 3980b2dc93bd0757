package config

import (
	"fmt"
	"net"
	"net/netip"
)

// EruAllowed parses EruAllow (validated): single addresses become /32 or /128 networks.
func (c *Config) EruAllowed() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.EruAllow {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// validateEru checks the eru_* settings: a listen address of its own, loopback unless
// eru_allow lists networks (Eru's clients cannot sign, so the adapter is not offered to
// the world by accident), parsable networks.
func (c *Config) validateEru() []error {
	var errs []error
	for _, s := range c.EruAllow {
		if _, err := parsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("eru_allow %q: want a CIDR (10.0.0.0/8) or an IP address", clipText(s)))
		}
	}
	if c.EruListen == "" {
		return errs
	}
	if err := validListen(c.EruListen); err != nil {
		return append(errs, fmt.Errorf("eru_listen %q: %w", clipText(c.EruListen), err))
	}
	if c.EruListen == c.Listen || (c.AWSListen != "" && c.EruListen == c.AWSListen) {
		errs = append(errs, fmt.Errorf("eru_listen %q: another API listens there; give the Eru adapter its own port", clipText(c.EruListen)))
	}
	host, _, _ := net.SplitHostPort(c.EruListen)
	if len(c.EruAllow) == 0 {
		a, err := netip.ParseAddr(host)
		if host != "localhost" && (err != nil || !a.IsLoopback()) {
			errs = append(errs, fmt.Errorf("eru_listen %q: not a loopback address, and eru_allow lists no network: the Eru adapter takes unsigned requests, so say which networks may call it", clipText(c.EruListen)))
		}
	}
	return errs
}

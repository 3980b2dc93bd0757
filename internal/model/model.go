// Package model holds the values that travel between members, clbd and haproxy.cfg, and the
// rules that make them safe to render: every name, address, port, weight and zone that can
// reach the rendered configuration is checked here, so no input can add a line or a directive.
package model

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Limits on member values.
const (
	MaxWeight      = 256
	DefaultWeight  = 100
	maxNameLen     = 64
	maxMemberLen   = 128
	maxHostnameLen = 253
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid value")

var (
	serviceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	memberRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
	zoneRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	labelRe   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)
)

// Member is one registered backend server of a service.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	Weight  int    `json:"weight"`
	Zone    string `json:"zone,omitempty"`
}

// Validate checks every field of m.
func (m Member) Validate() error {
	if err := ValidateMemberName(m.Name); err != nil {
		return err
	}
	if err := ValidateAddress(m.Address); err != nil {
		return err
	}
	if err := ValidatePort(m.Port); err != nil {
		return err
	}
	if err := ValidateWeight(m.Weight); err != nil {
		return err
	}
	return ValidateZone(m.Zone)
}

// ValidateServiceName accepts lowercase letters, digits, '-' and '_', starting with a letter or
// digit, at most 64 characters: the name is used in haproxy section names and URLs.
func ValidateServiceName(s string) error {
	if len(s) == 0 || len(s) > maxNameLen || !serviceRe.MatchString(s) {
		return fmt.Errorf("%w: service name %q: want 1-%d of a-z 0-9 - _, starting with a letter or digit", ErrInvalid, clip(s), maxNameLen)
	}
	return nil
}

// ValidateMemberName accepts letters, digits, '-', '_', '.' and ':', starting with a letter or
// digit, at most 128 characters: the characters haproxy allows in a server name.
func ValidateMemberName(s string) error {
	if len(s) == 0 || len(s) > maxMemberLen || !memberRe.MatchString(s) {
		return fmt.Errorf("%w: member name %q: want 1-%d of A-Z a-z 0-9 - _ . :, starting with a letter or digit", ErrInvalid, clip(s), maxMemberLen)
	}
	return nil
}

// ValidateZone accepts an empty zone (none) or a name with the rules of a service name.
func ValidateZone(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxNameLen || !zoneRe.MatchString(s) {
		return fmt.Errorf("%w: zone %q: want 1-%d of a-z 0-9 - _", ErrInvalid, clip(s), maxNameLen)
	}
	return nil
}

// ValidateAddress accepts an IPv4 or IPv6 address (no zone) or an RFC 1123 host name.
func ValidateAddress(s string) error {
	if s == "" {
		return fmt.Errorf("%w: address is empty", ErrInvalid)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("%w: address %q: IPv6 zones are not supported", ErrInvalid, clip(s))
		}
		if a.IsUnspecified() {
			return fmt.Errorf("%w: address %q is unspecified", ErrInvalid, clip(s))
		}
		return nil
	}
	if !ValidHostname(s) {
		return fmt.Errorf("%w: address %q: not an IP address or an RFC 1123 host name", ErrInvalid, clip(s))
	}
	return nil
}

// ValidHostname reports whether s is an RFC 1123 host name that is not all digits and dots.
func ValidHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > maxHostnameLen {
		return false
	}
	allNumeric := true
	for _, label := range strings.Split(s, ".") {
		if len(label) > 63 || !labelRe.MatchString(label) {
			return false
		}
		if _, err := strconv.Atoi(label); err != nil {
			allNumeric = false
		}
	}
	return !allNumeric
}

// ValidatePort accepts 1-65535.
func ValidatePort(p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%w: port %d: want 1-65535", ErrInvalid, p)
	}
	return nil
}

// ValidateWeight accepts 0-256 (haproxy's range; 0 takes the member out of rotation).
func ValidateWeight(w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("%w: weight %d: want 0-%d", ErrInvalid, w, MaxWeight)
	}
	return nil
}

// DefaultName is the member name used when a registration names none: address:port, with an
// IPv6 address written as ip6-<groups joined by '-'> because haproxy server names and URL
// paths do not take brackets.
func DefaultName(address string, port int) string {
	if a, err := netip.ParseAddr(address); err == nil && a.Is4In6() {
		address = a.Unmap().String()
	} else if err == nil && a.Is6() {
		address = "ip6-" + strings.ReplaceAll(a.String(), ":", "-")
	}
	return address + ":" + strconv.Itoa(port)
}

// Clip keeps error messages short whatever the input was: s cut to n bytes, with "..." when
// it was longer. Every package that quotes user input in an error uses it.
func Clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

func clip(s string) string { return Clip(s, 80) }

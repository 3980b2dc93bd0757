package gateway

// TEMPORARY (branch gwwire): stand-ins for gwcore's Validate and Targets until that branch
// lands; deleted when gwcore is merged. Not to be merged into main.

import (
	"errors"
	"fmt"
)

// Targets answers the haproxy backend of a service's http listener.
type Targets interface {
	Backend(service string, port int) (string, error)
}

// ErrUnknownService is wrapped by errors naming a service that does not exist.
var ErrUnknownService = errors.New("unknown service")

// Validate checks a gateway.
func Validate(name string, g Gateway, t Targets) ([]string, error) {
	var warns []string
	for host, d := range g.Domains {
		w, err := ValidateDomain(host, d, g, t)
		if err != nil {
			return nil, err
		}
		warns = append(warns, w...)
	}
	return warns, nil
}

// ValidateDomain checks one domain.
func ValidateDomain(host string, d Domain, g Gateway, t Targets) ([]string, error) {
	for _, r := range d.Routes {
		if r.Service != "" {
			if _, err := t.Backend(r.Service, r.Port); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Name, err)
			}
		}
		if r.Match.PathRegex == "(" {
			return nil, fmt.Errorf("%w: bad regex", ErrInvalid)
		}
	}
	return nil, nil
}
var ErrInvalid = errors.New("invalid")

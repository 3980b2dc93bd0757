package eru

import (
	"log/slog"

	"clb/agent/api"
	"clb/agent/config"
	"clb/internal/gateway"
)

// The Eru front's view of the core: membership and applies are the native API's interfaces
// (the same core behind every front); services and domains are defined through the two
// small interfaces below, which the agent implements.

// Definitions defines and removes services (an Eru upstream is a clb service). Errors are
// package defs' sentinels (ErrFileService, ErrNotDefined, ErrInvalid) or store failures.
type Definitions interface {
	DefineService(name string, svc config.Service) error
	RemoveService(name string) error
}

// Gateways defines and removes the domains of gateways (an Eru domain is a gateway domain
// whose routes are compiled from its rule set). Errors: gateway.ErrInvalid (bad input),
// gateway.ErrUnknownService, defs.ErrFileGateway, defs.ErrNoGateway, store failures.
type Gateways interface {
	PutDomain(gw, host string, d gateway.Domain) (warnings []string, err error)
	RemoveDomain(gw, host string) error
}

// Deps are what the front needs.
type Deps struct {
	Logger *slog.Logger
	// Config is the running config (services, gateways, and the eru_* settings).
	Config      func() *config.Config
	Members     api.Members
	Applier     api.Applier
	Definitions Definitions
	Gateways    Gateways
}

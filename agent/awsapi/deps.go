package awsapi

import (
	"log/slog"

	"clb/agent/api"
	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/auth"
	"clb/internal/ratelimit"
)

// The AWS front's view of the core. Membership, applies and status are the native API's
// interfaces (the same core behind both fronts); definitions add what the ELB model needs.

// Definitions are the saved definitions and the one way to change them.
type Definitions interface {
	// Definitions returns a copy of the saved definitions.
	Definitions() defs.File
	// UpdateDefinitions changes the definitions of one service in one step (service "" for
	// none); a config-file service is refused with defs.ErrFileService, a change that makes
	// the running config invalid with defs.ErrInvalid.
	UpdateDefinitions(service string, fn func(f *defs.File) error) error
	// SetZone takes a zone of a service (also a config-file one) out of rotation or back.
	SetZone(service, zone string, enabled bool) error
}

// Deps are what the front needs.
type Deps struct {
	Logger *slog.Logger
	// Config is the running config.
	Config      func() *config.Config
	Members     api.Members
	Applier     api.Applier
	Definitions Definitions
	Status      api.Status
	// Keys are clbd's keys; SigV4 uses their Secret.
	Keys auth.Keys
	// Limiter counts failed authentications per source, shared with the native API.
	Limiter *ratelimit.Limiter
	// Scaling is the Auto Scaling group controller (autoscaling.go); nil answers the Auto
	// Scaling and CloudWatch actions with an error saying so.
	Scaling Scaling
}

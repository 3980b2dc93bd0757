package api

import (
	"log/slog"
	"net/http"
	"time"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/model"
	"clb/internal/ratelimit"
	"clb/internal/stats"
	"clb/internal/store"
)

// The API's view of the core: small interfaces it defines itself, so that it can be read (and
// tested) without the reconciler, the store or the daemon behind them.

// Members is the durable membership.
type Members interface {
	Put(service string, m model.Member) (changed bool, err error)
	PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (changed bool, expires time.Time, err error)
	Delete(service, name string) (model.Member, error)
	Snapshot() store.Snapshot
	// Leases are the leased members by service (Expires is zero where the store does not
	// know it: etcd expires leases itself).
	Leases() map[string]map[string]store.Lease
}

// Applier applies what is stored to haproxy. Each call asks for an apply that covers every
// change made before it and returns a channel that receives its outcome: nil once haproxy runs
// it. TriggerFor is for the unregistration of member: the outcome comes once its servers are
// drained.
type Applier interface {
	Trigger() <-chan error
	TriggerFor(member string) <-chan error
}

// Definitions changes what the API defines (services, disabled zones) and makes it the running
// config. Its errors are the sentinels of package defs (ErrFileService, ErrNotDefined,
// ErrInvalid) or store failures.
type Definitions interface {
	DefineService(name string, svc config.Service) error
	RemoveService(name string) error
	SetZone(service, zone string, enabled bool) error
}

// Status is what /v1/status and the health of members come from.
type Status interface {
	// Status is the body of GET /v1/status.
	Status() any
	// Health is each member's health by service and member name, as haproxy last reported
	// it (nil: not known).
	Health() map[string]map[string]string
	// Draining lists, by service, the members that left and whose servers haproxy still
	// drains.
	Draining() map[string][]string
}

// Stats is the recent history of haproxy's traffic counters by service and member (GET
// /v1/stats); *stats.History is one.
type Stats interface {
	// Interval is how often haproxy is sampled, Window how much history is kept.
	Interval() time.Duration
	Window() time.Duration
	// Snapshot is every service's history, members' samples after since (zero: all).
	Snapshot(since time.Time) map[string]stats.ServiceStats
}

// Deps are what the API needs.
type Deps struct {
	Logger *slog.Logger
	// Config is the running config.
	Config      func() *config.Config
	Members     Members
	Applier     Applier
	Definitions Definitions
	Status      Status
	// Gateways defines gateways and their domains; nil serves no /v1/gateways.
	Gateways Gateways
	// Instances is the instance registry (PUT /v1/instances/{id}); nil serves none.
	Instances Instances
	// Groups are the Auto Scaling groups (GET /v1/groups...); nil serves none.
	Groups Groups
	// Stats is haproxy's traffic history; nil answers GET /v1/stats with no samples.
	Stats Stats
	// Verifier checks request signatures; Limiter counts failed authentications per source.
	Verifier *auth.Verifier
	Limiter  *ratelimit.Limiter
	// Metrics serves GET /metrics (unauthenticated, like /healthz); nil for none.
	Metrics http.Handler
	// OnCPU is told of the CPU use a member reports with its registration (nil: ignored).
	OnCPU func(service, member string, percent float64)
	// OnChange is told of every accepted membership change (op register or unregister).
	OnChange func(service, op string)
}

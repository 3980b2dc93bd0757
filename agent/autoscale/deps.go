package autoscale

import (
	"context"
	"log/slog"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/stats"
	"clb/internal/store"
)

// The controller's view of the core: small interfaces it defines itself, implemented by the
// composition root (package agent).

// Members is the durable membership: which instances have registered in which services.
type Members interface {
	Snapshot() store.Snapshot
}

// Health is each member's health by service and member name, as haproxy last reported it
// (nil: not known, e.g. before the first poll).
type Health interface {
	Health() map[string]map[string]string
}

// Drainer takes a member out of a service as the API's unregistration does: removed from the
// membership, then drained by haproxy; Unregister returns once haproxy no longer routes to it
// (nil also when it was not registered).
type Drainer interface {
	Unregister(ctx context.Context, service, member string) error
}

// Instances is the instance registry (clb_register --instance-id).
type Instances interface {
	Instances() map[string]defs.Instance
}

// Stats is haproxy's traffic history by service and member (*stats.History).
type Stats interface {
	Snapshot(since time.Time) map[string]stats.ServiceStats
}

// CPU is what members report of their machine's CPU use (clb_register --keepalive), by member
// name: percent and when it was reported.
type CPU interface {
	CPU() map[string]CPUReading
}

// CPUReading is one member's last report.
type CPUReading struct {
	Percent float64
	At      time.Time
}

// Options are what the controller needs.
type Options struct {
	Logger *slog.Logger
	// Config is the running config: launchers, launch configurations, groups, settings.
	Config func() *config.Config
	// StatePath is the file the controller keeps its intent and activities in (JSON, atomic
	// writes).
	StatePath string
	Members   Members
	Health    Health
	Drainer   Drainer
	Instances Instances
	Stats     Stats
	// CPU may be nil (no CPUUtilization data).
	CPU CPU
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

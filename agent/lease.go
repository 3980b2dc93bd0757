package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"clb/internal/model"
)

// Leases. `clb_register --ttl 30s` sends "ttl": "30s" with a registration; clbd removes the
// member, exactly like an unregister (stored durably, then applied by the reconciler), unless
// it is registered again within the TTL. A renewal of an unchanged member changes neither the
// state file nor the rendered config, so it never reloads haproxy.
//
// A lapsed member is removed within its TTL plus one lease_check_interval. Across a restart of
// clbd the TTL is kept (state.json) but not the expiry: every lease gets a full TTL from
// start-up, because clbd cannot know who renewed while it was down. So a restart does not
// expire everyone at once (members renewing every TTL/3 are back in time), and a member that
// died meanwhile is gone one TTL after the restart.

// Lease bounds: the shortest lease is configurable (lease_min_ttl, 1s at the least, for tests
// and very dynamic fleets), the longest is fixed.
const (
	defaultLeaseMinTTL        = 5 * time.Second
	maxLeaseTTL               = 24 * time.Hour
	defaultLeaseCheckInterval = time.Second
)

// validateLeases fills the lease defaults and checks their ranges.
func (c *Config) validateLeases() []error {
	var errs []error
	if c.LeaseMinTTL == 0 {
		c.LeaseMinTTL = defaultLeaseMinTTL
	}
	if c.LeaseCheckInterval == 0 {
		c.LeaseCheckInterval = defaultLeaseCheckInterval
	}
	if c.LeaseMinTTL < time.Second || c.LeaseMinTTL > maxLeaseTTL {
		errs = append(errs, fmt.Errorf("lease_min_ttl %s: want 1s-%s", c.LeaseMinTTL, maxLeaseTTL))
	}
	if c.LeaseCheckInterval < 100*time.Millisecond || c.LeaseCheckInterval > time.Minute {
		errs = append(errs, fmt.Errorf("lease_check_interval %s: want 100ms-1m", c.LeaseCheckInterval))
	}
	return errs
}

// leaseTTL parses the "ttl" of a registration; empty means a permanent member.
func (c *Config) leaseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return 0, errorf(http.StatusBadRequest, "bad_request", "ttl %q: want a duration such as \"30s\"", s)
	}
	if d < c.LeaseMinTTL || d > maxLeaseTTL {
		return 0, errorf(http.StatusBadRequest, "bad_request", "ttl %s: want %s-%s", d, c.LeaseMinTTL, maxLeaseTTL)
	}
	return d, nil
}

// saveMember stores a registration: a lease when the request has a TTL, else a permanent
// member (which also ends a lease the member had). It reports whether the stored state changed.
func (h *api) saveMember(service string, m model.Member, ttl string) (bool, error) {
	d, err := h.a.config().leaseTTL(ttl)
	if err != nil {
		return false, err
	}
	if d == 0 {
		return h.a.store.Put(service, m)
	}
	changed, _, err := h.a.store.PutLease(service, m, d, time.Now())
	return changed, err
}

// expireLeases removes lapsed members every lease_check_interval until ctx ends.
func (a *Agent) expireLeases(ctx context.Context) error {
	t := time.NewTicker(a.config().LeaseCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			a.expire(now)
		}
	}
}

// expire unregisters the members whose lease lapsed at now and asks the reconciler to apply
// it. A failure to save is logged and retried at the next tick: the members stay until then.
func (a *Agent) expire(now time.Time) {
	expired, err := a.store.Expire(now)
	if err != nil {
		a.log.Error("remove members with expired leases; retrying", "err", err)
	}
	for _, e := range expired {
		a.log.Info("lease expired: member unregistered", "service", e.Service, "member", e.Member.Name,
			"addr", e.Member.Address, "port", e.Member.Port, "ttl", e.Lease.TTL)
		a.metrics.registration(e.Service, "expire")
	}
	if len(expired) > 0 {
		a.rec.trigger()
	}
}

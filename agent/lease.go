package agent

import (
	"context"
	"time"
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
		a.rec.Trigger()
	}
}

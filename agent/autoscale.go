package agent

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"clb/agent/autoscale"
	"clb/agent/defs"
	"clb/internal/store"
)

// The core's side of Auto Scaling groups: the controller (package autoscale) gets the
// membership, haproxy's health and stats, the instance registry, the members' CPU reports and
// a drain that works like the API's unregistration.

// AutoscaleStateName is the controller's state file in the state dir. It is local to a node:
// with an etcd store, give groups to one node's config only (two nodes would both launch).
const AutoscaleStateName = "autoscale.json"

func (a *Agent) newAutoscale() *autoscale.Controller {
	cfg := a.config()
	c := autoscale.New(autoscale.Options{
		Logger: a.log, Config: a.config, StatePath: filepath.Join(cfg.StateDir, AutoscaleStateName),
		Members: a.store, Health: a.rec, Drainer: drainer{a}, Instances: instanceRegistry{a}, Stats: a.rec.Stats(), CPU: a.cpu,
	})
	if a.metrics != nil {
		a.metrics.reg.MustRegister(c.Collector())
	}
	return c
}

// drainer unregisters a member as DELETE /v1/services/{service}/members/{member} does and waits
// until haproxy has drained it.
type drainer struct{ a *Agent }

func (d drainer) Unregister(ctx context.Context, service, member string) error {
	_, err := d.a.store.Delete(service, member)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil {
		d.a.log.Info("member unregistered by autoscale", "service", service, "member", member)
		d.a.metrics.registration(service, "unregister")
	}
	select {
	case err := <-d.a.rec.TriggerFor(member):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type instanceRegistry struct{ a *Agent }

func (r instanceRegistry) Instances() map[string]defs.Instance { return r.a.defs.Snapshot().Instances }

// cpuReports keeps the CPU use members last reported, by member name.
type cpuReports struct {
	mu sync.Mutex
	m  map[string]autoscale.CPUReading
}

func newCPUReports() *cpuReports { return &cpuReports{m: map[string]autoscale.CPUReading{}} }

// report records one report (api.Deps.OnCPU); reports older than 10 minutes are dropped.
func (c *cpuReports) report(_, member string, percent float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.m[member] = autoscale.CPUReading{Percent: percent, At: now}
	for k, v := range c.m {
		if now.Sub(v.At) > 10*time.Minute {
			delete(c.m, k)
		}
	}
}

// CPU returns a copy of the reports.
func (c *cpuReports) CPU() map[string]autoscale.CPUReading {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]autoscale.CPUReading, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

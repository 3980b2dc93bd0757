package agent

import (
	"context"
	"strconv"
	"strings"
)

// Health values reported per member.
const (
	healthUp       = "up"
	healthDown     = "down"
	healthMaint    = "maint"
	healthDrain    = "drain"
	healthStarting = "starting"
	healthUnknown  = "unknown"
)

// parseServersState reads `show servers state` (format 1) into health by backend and server.
// The admin state is a bit field: maintenance bits 0x01 0x02 0x04 0x20 0x40, drain 0x08 0x10.
// (client-native's RuntimeServer parses it as hex and has no check status, so clbd reads the
// raw output.)
func parseServersState(out string) map[string]map[string]string {
	h := map[string]map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		backend, server := f[1], f[3]
		op, err1 := strconv.Atoi(f[5])
		admin, err2 := strconv.Atoi(f[6])
		if err1 != nil || err2 != nil {
			continue
		}
		state := healthUnknown
		switch {
		case admin&0x67 != 0:
			state = healthMaint
		case admin&0x18 != 0:
			state = healthDrain
		case op == 0:
			state = healthDown
		case op == 1:
			state = healthStarting
		case op == 2 || op == 3:
			state = healthUp
		}
		if h[backend] == nil {
			h[backend] = map[string]string{}
		}
		h[backend][server] = state
	}
	return h
}

// pollHealth refreshes the health cache from haproxy (reconciler goroutine only).
func (r *reconciler) pollHealth(ctx context.Context) {
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	if r.dial == nil || !running {
		return
	}
	if r.rt == nil {
		rt, err := r.dial(ctx)
		if err != nil {
			r.log.Debug("health poll", "err", err)
			return
		}
		r.rt = rt
	}
	out, err := r.rt.ExecuteRaw("show servers state")
	if err != nil {
		r.rt = nil
		r.log.Debug("health poll", "err", err)
		return
	}
	h := parseServersState(strings.Join(out, ""))
	r.mu.Lock()
	r.health = h
	r.mu.Unlock()
}

// healthSnapshot returns the last health poll (nil before the first, or without a runtime API).
func (r *reconciler) healthSnapshot() map[string]map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health
}

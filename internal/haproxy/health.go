package haproxy

import (
	"strconv"
	"strings"
)

// Health values of a server, as ParseServersState reports them.
const (
	HealthUp       = "up"
	HealthDown     = "down"
	HealthMaint    = "maint"
	HealthDrain    = "drain"
	HealthStarting = "starting"
	HealthUnknown  = "unknown"
)

// ServerState is one server of `show servers state`.
type ServerState struct {
	Health  string
	Address string
}

// ParseServersState reads `show servers state` (format 1) into the state of each server, by
// backend and server name. The admin state is a bit field (haproxy's SRV_ADMF_*): maintenance
// is 0x01 forced, 0x02 inherited, 0x20 resolution (SRV_ADMF_MAINT = 0x23); drain 0x08 forced,
// 0x10 inherited. 0x04 (disabled in the config) stays set on a slot clbd has since made ready,
// and 0x40 (FQDN set from the CLI) says nothing of the state either (verified on 2.6.12: a
// slot rendered `disabled`, then `set server ... state ready`, serves with admin state 4). (client-native's RuntimeServer parses it as hex and has no check
// status, so clbd reads the raw output.)
func ParseServersState(out string) map[string]map[string]ServerState {
	h := map[string]map[string]ServerState{}
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
		state := HealthUnknown
		switch {
		case admin&0x23 != 0:
			state = HealthMaint
		case admin&0x18 != 0:
			state = HealthDrain
		case op == 0:
			state = HealthDown
		case op == 1:
			state = HealthStarting
		case op == 2 || op == 3:
			state = HealthUp
		}
		if h[backend] == nil {
			h[backend] = map[string]ServerState{}
		}
		h[backend][server] = ServerState{Health: state, Address: f[4]}
	}
	return h
}

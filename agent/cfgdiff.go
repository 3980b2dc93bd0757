package agent

import (
	"maps"
	"slices"
	"strings"
)

// A parsed haproxy.cfg, split into what a runtime change can touch (the server lines of each
// backend) and everything else (the skeleton). Two configs whose skeletons are equal differ
// only in members, weights or states, which the runtime API applies without a reload.

// haServer is one `server NAME ADDR ARGS...` line of a backend.
type haServer struct {
	Name string
	Addr string
	Args []string
}

// parsedConfig is a rendered config as the runtime path sees it.
type parsedConfig struct {
	skeleton string
	// servers by backend, then by server name.
	servers map[string]map[string]haServer
	// defaults is each backend's `default-server` arguments: dynamic servers do not inherit
	// them, so the runtime path passes them explicitly.
	defaults map[string][]string
	// forced names the backends haproxy 2.6 cannot change at runtime, with the reason.
	forced map[string]string
}

// parseConfig splits cfg. It understands the section layout of any haproxy.cfg (a section
// starts at a non-indented keyword line), so user templates work too.
func parseConfig(cfg []byte) parsedConfig {
	p := parsedConfig{servers: map[string]map[string]haServer{}, defaults: map[string][]string{}, forced: map[string]string{}}
	var skel strings.Builder
	section := ""
	for _, line := range strings.Split(string(cfg), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := strings.Fields(trimmed)
		if line[0] != ' ' && line[0] != '\t' {
			section = ""
			if (fields[0] == "backend" || fields[0] == "listen") && len(fields) > 1 {
				section = fields[1]
			}
		} else if section != "" {
			switch fields[0] {
			case "server":
				if len(fields) >= 3 {
					if p.servers[section] == nil {
						p.servers[section] = map[string]haServer{}
					}
					p.servers[section][fields[1]] = haServer{Name: fields[1], Addr: fields[2], Args: fields[3:]}
					continue
				}
			case "default-server":
				p.defaults[section] = fields[1:]
			case "cookie":
				p.forced[section] = "cookie stickiness: haproxy 2.6 refuses cookies on dynamic servers"
			case "balance":
				if len(fields) > 1 && (fields[1] == "static-rr" || fields[1] == "source" || fields[1] == "uri") {
					p.forced[section] = "balance " + fields[1] + ": haproxy 2.6 refuses dynamic servers with it"
				}
			}
		}
		skel.WriteString(strings.Join(fields, " "))
		skel.WriteByte('\n')
	}
	p.skeleton = skel.String()
	return p
}

// serverChange is one runtime operation.
type serverChange struct {
	Backend string
	Old     *haServer // nil: added
	New     *haServer // nil: removed
}

// weightOnly reports whether the change is only a new weight, and returns it.
func (c serverChange) weightOnly() (string, bool) {
	if c.Old == nil || c.New == nil || c.Old.Addr != c.New.Addr {
		return "", false
	}
	ow, oa := splitWeight(c.Old.Args)
	nw, na := splitWeight(c.New.Args)
	return nw, nw != "" && ow != nw && slices.Equal(oa, na)
}

func splitWeight(args []string) (weight string, rest []string) {
	for i := 0; i < len(args); i++ {
		if args[i] == "weight" && i+1 < len(args) {
			weight = args[i+1]
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	return weight, rest
}

// diffServers lists the server changes from old to new, sorted by backend and name.
func diffServers(old, new parsedConfig) []serverChange {
	var out []serverChange
	backends := map[string]bool{}
	for b := range old.servers {
		backends[b] = true
	}
	for b := range new.servers {
		backends[b] = true
	}
	for _, b := range slices.Sorted(maps.Keys(backends)) {
		names := map[string]bool{}
		for n := range old.servers[b] {
			names[n] = true
		}
		for n := range new.servers[b] {
			names[n] = true
		}
		for _, n := range slices.Sorted(maps.Keys(names)) {
			o, hasOld := old.servers[b][n]
			nw, hasNew := new.servers[b][n]
			switch {
			case hasOld && hasNew && o.Addr == nw.Addr && slices.Equal(o.Args, nw.Args):
			case hasOld && hasNew:
				out = append(out, serverChange{Backend: b, Old: &o, New: &nw})
			case hasOld:
				out = append(out, serverChange{Backend: b, Old: &o})
			default:
				out = append(out, serverChange{Backend: b, New: &nw})
			}
		}
	}
	return out
}

// addArgs is what `add server BACKEND/NAME` takes for s: its address, then the backend's
// default-server arguments (dynamic servers do not inherit them) without the ones `add server`
// refuses, then its own arguments.
func addArgs(s haServer, defaults []string) string {
	args := []string{s.Addr}
	for i := 0; i < len(defaults); i++ {
		if defaults[i] == "init-addr" { // resolution options: not for dynamic servers
			i++
			continue
		}
		args = append(args, defaults[i])
	}
	args = append(args, s.Args...)
	return strings.Join(args, " ")
}

// hasCheck reports whether a dynamic server built from s and defaults has health checks.
func hasCheck(s haServer, defaults []string) bool {
	return slices.Contains(defaults, "check") || slices.Contains(s.Args, "check")
}

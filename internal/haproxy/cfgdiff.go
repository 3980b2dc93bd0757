package haproxy

import (
	"maps"
	"slices"
	"strings"
)

// ParsedConfig and friends: a parsed haproxy.cfg, split into what a runtime change can touch (the server lines of each
// backend) and everything else (the skeleton). Two configs whose skeletons are equal differ
// only in members, weights or states, which the runtime API applies without a reload.

// Server is one `server NAME ADDR ARGS...` line of a backend.
type Server struct {
	Name string
	Addr string
	Args []string
	// Comment is what follows a '#' on the line: the member a slot holds, in clbd's template.
	Comment string
}

// ParsedConfig is a rendered config as the runtime path sees it.
type ParsedConfig struct {
	// Skeleton is every line but the servers, whitespace folded: equal skeletons differ only
	// in servers.
	Skeleton string
	// Servers by backend, then by server name.
	Servers map[string]map[string]Server
	// Defaults is each backend's `default-server` arguments: dynamic servers do not inherit
	// them, so the runtime path passes them explicitly.
	Defaults map[string][]string
	// ReloadOnly names the backends haproxy 2.6 cannot change at runtime, with the reason.
	ReloadOnly map[string]string
	// Backends are the names of every backend (and listen) section, with or without servers.
	Backends map[string]bool
	// Balance is each backend's balance algorithm, where it names one.
	Balance map[string]string
}

// ParseConfig splits cfg. It understands the section layout of any haproxy.cfg (a section
// starts at a non-indented keyword line), so user templates work too.
func ParseConfig(cfg []byte) ParsedConfig {
	p := ParsedConfig{Servers: map[string]map[string]Server{}, Defaults: map[string][]string{}, ReloadOnly: map[string]string{}, Backends: map[string]bool{}, Balance: map[string]string{}}
	var skel strings.Builder
	section := ""
	// inDefaults: in a defaults section, whose default-server a backend starts from (haproxy
	// copies it; dynamic servers inherit nothing, so the runtime path needs it spelled out).
	inDefaults, defaultServer := false, []string(nil)
	for _, line := range strings.Split(string(cfg), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := strings.Fields(trimmed)
		if line[0] != ' ' && line[0] != '\t' {
			section, inDefaults = "", fields[0] == "defaults"
			if inDefaults {
				defaultServer = nil
			}
			if (fields[0] == "backend" || fields[0] == "listen") && len(fields) > 1 {
				section = fields[1]
				p.Backends[section] = true
				if defaultServer != nil {
					p.Defaults[section] = slices.Clone(defaultServer)
				}
			}
		} else if inDefaults && fields[0] == "default-server" {
			defaultServer = append(defaultServer, fields[1:]...)
		} else if section != "" {
			switch fields[0] {
			case "server":
				if len(fields) >= 3 {
					if p.Servers[section] == nil {
						p.Servers[section] = map[string]Server{}
					}
					srv := Server{Name: fields[1], Addr: fields[2], Args: fields[3:]}
					if i := slices.Index(srv.Args, "#"); i >= 0 {
						srv.Comment = strings.Join(srv.Args[i+1:], " ")
						srv.Args = srv.Args[:i]
					}
					p.Servers[section][fields[1]] = srv
					continue
				}
			case "default-server":
				// Arguments of the backend's own line come after (and win over) the defaults'.
				p.Defaults[section] = append(p.Defaults[section], fields[1:]...)
			case "cookie":
				p.ReloadOnly[section] = "cookie stickiness: haproxy 2.6 refuses cookies on dynamic servers"
			case "balance":
				if len(fields) > 1 {
					p.Balance[section] = fields[1]
				}
				if len(fields) > 1 && (fields[1] == "static-rr" || fields[1] == "source" || fields[1] == "uri") {
					p.ReloadOnly[section] = "balance " + fields[1] + ": haproxy 2.6 refuses dynamic servers with it"
				}
			}
		}
		skel.WriteString(strings.Join(fields, " "))
		skel.WriteByte('\n')
	}
	p.Skeleton = skel.String()
	return p
}

// ServerChange is one runtime operation.
type ServerChange struct {
	Backend string
	Old     *Server // nil: added
	New     *Server // nil: removed
}

// WeightOnly reports whether the change is only a new weight, and returns it.
func (c ServerChange) WeightOnly() (string, bool) {
	if c.Old == nil || c.New == nil || c.Old.Addr != c.New.Addr {
		return "", false
	}
	ow, oa := splitWeight(c.Old.Args)
	nw, na := splitWeight(c.New.Args)
	return nw, nw != "" && ow != nw && slices.Equal(oa, na)
}

// Weight is the server's `weight` argument, "" when it has none.
func (s Server) Weight() string {
	w, _ := splitWeight(s.Args)
	return w
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

// DiffServers lists the server changes from old to new, sorted by backend and name.
func DiffServers(old, new ParsedConfig) []ServerChange {
	var out []ServerChange
	backends := map[string]bool{}
	for b := range old.Servers {
		backends[b] = true
	}
	for b := range new.Servers {
		backends[b] = true
	}
	for _, b := range slices.Sorted(maps.Keys(backends)) {
		names := map[string]bool{}
		for n := range old.Servers[b] {
			names[n] = true
		}
		for n := range new.Servers[b] {
			names[n] = true
		}
		for _, n := range slices.Sorted(maps.Keys(names)) {
			o, hasOld := old.Servers[b][n]
			nw, hasNew := new.Servers[b][n]
			switch {
			case hasOld && hasNew && o.Addr == nw.Addr && slices.Equal(o.Args, nw.Args):
			case hasOld && hasNew:
				out = append(out, ServerChange{Backend: b, Old: &o, New: &nw})
			case hasOld:
				out = append(out, ServerChange{Backend: b, Old: &o})
			default:
				out = append(out, ServerChange{Backend: b, New: &nw})
			}
		}
	}
	return out
}

// AddArgs is what `add server BACKEND/NAME` takes for s: its address, then the backend's
// default-server arguments (dynamic servers do not inherit them) without the ones `add server`
// refuses, then its own arguments.
func AddArgs(s Server, defaults []string) string {
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

// HasCheck reports whether a dynamic server built from s and defaults has health checks.
func HasCheck(s Server, defaults []string) bool {
	return slices.Contains(defaults, "check") || slices.Contains(s.Args, "check")
}

// slotChange is a change of a static server (a slot) that `set server` can make: it leaves
// (now disabled: drain it), or it takes a member (address, weight, enabled). ok is false when
// anything else of the line changed.
type slotChange struct {
	leave, enable bool
	addr, weight  string // "" = unchanged
}

func (c ServerChange) slotChange() (slotChange, bool) {
	if c.Old == nil || c.New == nil {
		return slotChange{}, false
	}
	strip := func(args []string) (rest []string, weight string, disabled bool) {
		weight, rest = splitWeight(args)
		n := len(rest)
		rest = slices.DeleteFunc(slices.Clone(rest), func(a string) bool { return a == "disabled" })
		return rest, weight, len(rest) != n
	}
	oa, ow, od := strip(c.Old.Args)
	na, nw, nd := strip(c.New.Args)
	if !slices.Equal(oa, na) {
		return slotChange{}, false
	}
	if nd {
		return slotChange{leave: !od}, true
	}
	sc := slotChange{enable: od}
	if c.New.Addr != c.Old.Addr || od {
		sc.addr = c.New.Addr
	}
	if nw != ow || od {
		sc.weight = nw
	}
	return sc, true
}

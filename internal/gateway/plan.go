package gateway

import (
	"clb/internal/haproxy"
	"slices"
	"sort"
	"strings"
)

// MapUpdate is one runtime replacement of a map's whole contents (haproxy.ApplyMap).
type MapUpdate struct {
	// Map is the map file's name, relative to the map directory.
	Map     string
	Entries []haproxy.MapEntry
}

// Plan returns the runtime updates that take haproxy from old's maps to c's, in the order to
// apply them, one ApplyMap each (old nil: every map, as after a start). It assumes the
// scaffold is unchanged (same gateways, binds, headers: ScaffoldEqual); otherwise reload.
//
// A domain that moves between the tree maps and a regex shard, or between shards, or goes
// away, must never find its routes missing: first every route map gets its new entries plus
// the old entries of such domains, then domains.map flips them, then the route maps drop the
// old entries. A domain that stays where it is changes with its map's one atomic commit (a
// tree domain whose change touches both exact.map and prefix.map may answer one request with
// the new exact and the old prefix routes in between). Unchanged maps are left out.
func (c *Compiled) Plan(old *Compiled) []MapUpdate {
	var first, flip, last []MapUpdate
	for _, f := range c.Frontends {
		var of *Frontend
		if old != nil {
			for i := range old.Frontends {
				if old.Frontends[i].Gateway == f.Gateway {
					of = &old.Frontends[i]
				}
			}
		}
		if of == nil {
			for _, n := range gatewayMaps(f) {
				first = append(first, MapUpdate{Map: n, Entries: c.Maps[n]})
			}
			continue
		}
		// Hosts whose domains.map value changes mode (tree, shard, redirect) or that go.
		oldMode, newMode := modes(old.Maps[of.DomainsMap]), modes(c.Maps[f.DomainsMap])
		moving := map[string]bool{}
		for h, m := range oldMode {
			if newMode[h] != m {
				moving[h] = true
			}
		}
		routeMaps := gatewayMaps(f)[1:]
		for _, n := range routeMaps {
			want := c.Maps[n]
			if equalEntries(old.Maps[n], want) {
				continue
			}
			var keep []haproxy.MapEntry
			for _, e := range old.Maps[n] {
				if moving[entryHost(e.Key)] {
					keep = append(keep, e)
				}
			}
			if len(keep) > 0 {
				union := append(slices.Clone(want), keep...)
				if n == f.ExactMap || n == f.PrefixMap {
					sort.Slice(union, func(i, j int) bool { return union[i].Key < union[j].Key })
				}
				first = append(first, MapUpdate{Map: n, Entries: union})
				last = append(last, MapUpdate{Map: n, Entries: want})
			} else {
				first = append(first, MapUpdate{Map: n, Entries: want})
			}
		}
		if !equalEntries(old.Maps[f.DomainsMap], c.Maps[f.DomainsMap]) {
			flip = append(flip, MapUpdate{Map: f.DomainsMap, Entries: c.Maps[f.DomainsMap]})
		}
	}
	return append(append(first, flip...), last...)
}

// ScaffoldEqual reports whether c renders the same scaffold as old (same gateways, binds,
// protocols, headers and defaults): then route changes are map updates (Plan); otherwise
// haproxy must reload.
func (c *Compiled) ScaffoldEqual(old *Compiled) bool {
	if old == nil || len(old.Frontends) != len(c.Frontends) {
		return false
	}
	for i, f := range c.Frontends {
		o := old.Frontends[i]
		if f.Gateway != o.Gateway || f.Bind != o.Bind || f.Protocol != o.Protocol || f.BindExtra != o.BindExtra ||
			f.DefaultBackend != o.DefaultBackend || !slices.Equal(f.Headers, o.Headers) {
			return false
		}
	}
	return true
}

// gatewayMaps lists a frontend's maps, domains.map first.
func gatewayMaps(f Frontend) []string {
	out := []string{f.DomainsMap, f.ExactMap, f.PrefixMap}
	for _, s := range f.Shards {
		out = append(out, s.Map)
	}
	return out
}

// modes maps each host of a domains.map to its mode ("t", "s07", "r").
func modes(entries []haproxy.MapEntry) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		m, _, _ := strings.Cut(e.Value, "|")
		out[e.Key] = m
	}
	return out
}

// entryHost is the host a route map key belongs to ("host@path" or `(?m)\Ahost\n...`).
func entryHost(key string) string {
	if rest, ok := strings.CutPrefix(key, `(?m)\A`); ok {
		h, _, _ := strings.Cut(rest, `\n`)
		return strings.ReplaceAll(h, `\`, "")
	}
	h, _, _ := strings.Cut(key, "@")
	return h
}

func equalEntries(a, b []haproxy.MapEntry) bool {
	return slices.Equal(a, b)
}

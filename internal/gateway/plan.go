package gateway

import (
	"clb/internal/haproxy"
	"path"
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
// scaffold is unchanged (ScaffoldEqual); otherwise reload. See PlanMaps.
func (c *Compiled) Plan(old *Compiled) []MapUpdate {
	var loaded map[string][]haproxy.MapEntry
	if old != nil {
		loaded = old.Maps
	}
	return PlanMaps(loaded, c.Maps)
}

// PlanMaps orders the runtime updates from the maps haproxy has loaded to the wanted ones.
// Keys are map file names or paths (base names as Compile makes them: gw.NAME.domains.map,
// gw.NAME.exact.map, ...); a map missing from loaded is unknown and is applied whole. Maps
// whose entries are equal are left out.
//
// A domain that moves between the tree maps and a regex shard, or between shards, or goes
// away, must never find its routes missing: first every route map of its gateway gets its
// new entries plus the old entries of such domains, then domains.map flips them, then the
// route maps drop the old entries. Applying maps in name order instead (domains.map first)
// answers such a domain's requests with its no-match status until its new shard is loaded.
// A domain that stays where it is changes with its map's one atomic commit (a tree domain
// whose change touches both exact.map and prefix.map may answer one request with the new
// exact and the old prefix routes in between).
func PlanMaps(loaded, want map[string][]haproxy.MapEntry) []MapUpdate {
	var first, flip, last []MapUpdate
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Hosts that move or go, by gateway (the key prefix before "domains.map").
	moving := map[string]map[string]bool{}
	for _, k := range keys {
		prefix, ok := strings.CutSuffix(k, "domains.map")
		if !ok || !strings.HasPrefix(path.Base(k), "gw.") {
			continue
		}
		old, known := loaded[k]
		if !known {
			continue
		}
		oldMode, newMode := modes(old), modes(want[k])
		for h, m := range oldMode {
			if newMode[h] != m {
				if moving[prefix] == nil {
					moving[prefix] = map[string]bool{}
				}
				moving[prefix][h] = true
			}
		}
	}
	for _, k := range keys {
		w := want[k]
		old, known := loaded[k]
		if known && slices.Equal(old, w) {
			continue
		}
		if strings.HasSuffix(k, "domains.map") {
			flip = append(flip, MapUpdate{Map: k, Entries: w})
			continue
		}
		var keep []haproxy.MapEntry
		for prefix, hosts := range moving {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			for _, e := range old {
				if hosts[entryHost(e.Key)] {
					keep = append(keep, e)
				}
			}
		}
		if len(keep) == 0 {
			first = append(first, MapUpdate{Map: k, Entries: w})
			continue
		}
		union := append(slices.Clone(w), keep...)
		if strings.HasSuffix(k, "exact.map") || strings.HasSuffix(k, "prefix.map") {
			sort.SliceStable(union, func(i, j int) bool { return union[i].Key < union[j].Key })
		}
		first = append(first, MapUpdate{Map: k, Entries: union})
		last = append(last, MapUpdate{Map: k, Entries: w})
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

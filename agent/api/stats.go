package api

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"clb/internal/model"
	"clb/internal/stats"
)

// StatsView is the body of GET /v1/stats (the contract the web console and `clbd` read).
type StatsView struct {
	// IntervalSeconds is how often clbd samples haproxy (the health poll); WindowSeconds how
	// much history it keeps.
	IntervalSeconds float64            `json:"interval_seconds"`
	WindowSeconds   float64            `json:"window_seconds"`
	Services        []ServiceStatsView `json:"services"`
}

// ServiceStatsView is one service in GET /v1/stats.
type ServiceStatsView struct {
	Name string `json:"name"`
	// Totals is the latest sample of the service's backends together (null before the first
	// sample, or without a runtime API).
	Totals  *stats.Sample     `json:"totals"`
	Members []MemberStatsView `json:"members"`
}

// MemberStatsView is one member's samples, oldest first.
type MemberStatsView struct {
	Name    string         `json:"name"`
	Samples []stats.Sample `json:"samples"`
}

// statsParams are the query parameters GET /v1/stats takes.
var statsParams = []string{"service", "since"}

// getStats answers GET /v1/stats: every service the key may see (or the one of ?service=),
// each with its latest totals and its members' samples (after ?since=RFC3339). Members are
// the registered ones and those the history still has (draining after their unregistration),
// sorted by name; a member without samples yet has an empty list. An unknown query parameter is refused (400), so that
// a typo (?servce=web) does not silently answer every service.
func (h *Server) getStats(r *http.Request, _ []byte) (int, any, error) {
	q := r.URL.Query()
	for k, v := range q {
		if !slices.Contains(statsParams, k) {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "unknown query parameter %q: GET /v1/stats takes %s", k, strings.Join(statsParams, ", "))
		}
		if len(v) > 1 {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "query parameter %q given %d times; give it once", k, len(v))
		}
	}
	var since time.Time
	if q.Has("since") {
		v := q.Get("since")
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "since=%q is not an RFC 3339 time (like 2026-12-02T01:02:03Z)", v)
		}
		since = t
	}
	cfg := h.d.Config()
	id := Identity(r)
	var names []string
	if q.Has("service") {
		name := q.Get("service")
		if err := model.ValidateServiceName(name); err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
		}
		if err := requireService(r, name); err != nil {
			return 0, nil, err
		}
		if _, ok := cfg.Services[name]; !ok {
			return 0, nil, errorf(http.StatusNotFound, "not_found", "unknown service %q: it is not defined in clbd's config", name)
		}
		names = []string{name}
	} else {
		for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
			if id.Scope.AllowsService(name) {
				names = append(names, name)
			}
		}
	}
	view := StatsView{Services: []ServiceStatsView{}}
	var hist map[string]stats.ServiceStats
	if h.d.Stats != nil {
		view.IntervalSeconds, view.WindowSeconds = h.d.Stats.Interval().Seconds(), h.d.Stats.Window().Seconds()
		hist = h.d.Stats.Snapshot(since)
	}
	snap := h.d.Members.Snapshot()
	for _, name := range names {
		st := hist[name]
		members := map[string]bool{}
		for _, m := range snap.Members[name] {
			members[m.Name] = true
		}
		for m := range st.Members {
			members[m] = true
		}
		sv := ServiceStatsView{Name: name, Totals: st.Totals, Members: []MemberStatsView{}}
		for _, m := range slices.Sorted(maps.Keys(members)) {
			samples := st.Members[m].Samples
			if samples == nil {
				samples = []stats.Sample{}
			}
			sv.Members = append(sv.Members, MemberStatsView{Name: m, Samples: samples})
		}
		view.Services = append(view.Services, sv)
	}
	return http.StatusOK, view, nil
}

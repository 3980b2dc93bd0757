package reconcile

import (
	"reflect"
	"testing"
	"time"

	"clb/internal/haproxy"
	"clb/internal/stats"
)

// TestStatsInput: show stat rows reach the history under member names (slots mapped by the
// layout, dynamic servers by their own name), free slots without a member, backends not in
// the layout left out.
func TestStatsInput(t *testing.T) {
	lay := layout{
		service: map[string]string{"web_80": "web", "api_90": "api"},
		order:   map[string][]string{"web": {"web_80"}, "api": {"api_90"}},
		slotted: map[string]bool{"web_80": true},
		member:  map[string]map[string]string{"web_80": {"s1": "10.0.0.1:8000"}},
	}
	table := map[string]haproxy.BackendStat{
		"web_80": {Backend: haproxy.Stat{ReqTot: 9, HTTP: true, Scur: 2}, Servers: map[string]haproxy.Stat{
			"s1": {Status: "UP", ReqTot: 7, HTTP: true, Hrsp5xx: 1, Rtime: 3, Scur: 2},
			"s2": {Status: "MAINT", ReqTot: 2, HTTP: true},
			"s3": {Status: "MAINT", ReqTot: 5, HTTP: true, Scur: 1},
		}},
		"api_90":   {Backend: haproxy.Stat{Stot: 4}, Servers: map[string]haproxy.Stat{"a1": {Status: "DOWN", Stot: 4, Econ: 1}}},
		"stranger": {Backend: haproxy.Stat{Stot: 100}},
	}
	now := time.Now()
	got := statsInput(now, 3, table, lay, map[string]string{"web_80/s3": "10.0.0.3:8000"})
	want := stats.Input{Time: now, Epoch: 3, Services: map[string]stats.ServiceInput{
		"web": {
			Backends: []stats.Source{{Key: "web_80", Reading: stats.Reading{Requests: 9, Sessions: 2}}},
			Servers: []stats.Source{
				{Key: "web_80/s1", Member: "10.0.0.1:8000", Reading: stats.Reading{Requests: 7, Responses: [6]uint64{4: 1}, RespMS: 3, Sessions: 2, Up: true}},
				{Key: "web_80/s2", Reading: stats.Reading{Requests: 2}},
				{Key: "web_80/s3", Member: "10.0.0.3:8000", Reading: stats.Reading{Requests: 5, Sessions: 1}},
			},
		},
		"api": {
			Backends: []stats.Source{{Key: "api_90", Reading: stats.Reading{Requests: 4}}},
			Servers:  []stats.Source{{Key: "api_90/a1", Member: "a1", Reading: stats.Reading{Requests: 4, ConnectErrors: 1}}},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statsInput:\n got %+v\nwant %+v", got, want)
	}
}

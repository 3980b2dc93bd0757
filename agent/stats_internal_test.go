package agent

import (
	"net/http"
	"testing"
)

// TestStatsWithoutRuntimeAPI: without an admin socket (external mode, reload only) clbd has
// no traffic figures: GET /v1/stats answers every service with null totals and registered
// members without samples, rather than an error.
func TestStatsWithoutRuntimeAPI(t *testing.T) {
	base, _ := testAgent(t)
	if st, out := doCase(t, base, apiCase{method: "PUT", path: "/v1/services/web/members/m1", body: `{"address":"127.0.0.1","port":8001}`, sign: true}); st != http.StatusOK {
		t.Fatalf("register = %d %v", st, out)
	}
	st, out := doCase(t, base, apiCase{method: "GET", path: "/v1/stats", sign: true})
	if st != http.StatusOK || out["interval_seconds"] != 2.0 {
		t.Fatalf("GET /v1/stats = %d %v", st, out)
	}
	svcs := out["services"].([]any)
	web := svcs[0].(map[string]any)
	members := web["members"].([]any)
	if len(svcs) != 1 || web["name"] != "web" || web["totals"] != nil || len(members) != 1 {
		t.Fatalf("services = %v, want web with null totals and m1", svcs)
	}
	if m := members[0].(map[string]any); m["name"] != "m1" || len(m["samples"].([]any)) != 0 {
		t.Errorf("member = %v, want m1 with no samples", m)
	}
}

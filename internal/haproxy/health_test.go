package haproxy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// stateHeader is how haproxy 2.6 starts `show servers state` (format 1).
const stateHeader = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"

// stateRow is one server of `show servers state` with the given op and admin states, the rest
// of the fields as haproxy 2.6 writes them for a checked server.
func stateRow(backend, server, addr string, op, admin int) string {
	return fmt.Sprintf("3 %s 1 %s %s %d %d 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0", backend, server, addr, op, admin)
}

func TestParseServersState(t *testing.T) {
	one := func(op, admin int) string {
		return stateHeader + stateRow("web_8080", "b1", "127.0.0.1", op, admin) + "\n"
	}
	up := func(addr string) ServerState { return ServerState{Health: HealthUp, Address: addr} }
	for _, tc := range []struct {
		name string
		out  string
		want map[string]map[string]ServerState
		skip string
	}{
		{"op 0: down", one(0, 0), map[string]map[string]ServerState{"web_8080": {"b1": {HealthDown, "127.0.0.1"}}}, ""},
		{"op 1: starting", one(1, 0), map[string]map[string]ServerState{"web_8080": {"b1": {HealthStarting, "127.0.0.1"}}}, ""},
		{"op 2: up", one(2, 0), map[string]map[string]ServerState{"web_8080": {"b1": {HealthUp, "127.0.0.1"}}}, ""},
		{"op 3 (stopping, still serving): up", one(3, 0), map[string]map[string]ServerState{"web_8080": {"b1": {HealthUp, "127.0.0.1"}}}, ""},
		{"op out of range: unknown", one(7, 0), map[string]map[string]ServerState{"web_8080": {"b1": {HealthUnknown, "127.0.0.1"}}}, ""},
		{"0x01 forced maint", one(0, 0x01), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		{"0x01 forced maint wins over up", one(2, 0x01), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		{"0x02 maint inherited from a tracked server", one(2, 0x02), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		{"0x20 maint: address resolution failed", one(0, 0x20), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		{"0x08 forced drain", one(2, 0x08), map[string]map[string]ServerState{"web_8080": {"b1": {HealthDrain, "127.0.0.1"}}}, ""},
		{"0x10 drain inherited", one(2, 0x10), map[string]map[string]ServerState{"web_8080": {"b1": {HealthDrain, "127.0.0.1"}}}, ""},
		{"maint wins over drain", one(2, 0x01|0x08), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		// A server slot rendered disabled and made ready with `set server` keeps 0x04 (seen on 2.6.12).
		{"0x04 (disabled in the config) made ready: up", one(2, 0x04), map[string]map[string]ServerState{"web_8080": {"b1": {HealthUp, "127.0.0.1"}}}, ""},
		{"0x04 and forced maint: maint", one(0, 0x05), map[string]map[string]ServerState{"web_8080": {"b1": {HealthMaint, "127.0.0.1"}}}, ""},
		{
			// SRV_ADMF_HMAINT (0x40) only says the FQDN was set through the CLI: haproxy's own
			// maintenance mask (SRV_ADMF_MAINT) is 0x23 and its stats show such a server UP.
			"0x40 (fqdn set from the CLI) is not maintenance", one(2, 0x40),
			map[string]map[string]ServerState{"web_8080": {"b1": {HealthUp, "127.0.0.1"}}},
			"",
		},
		{
			"several backends and servers, addresses kept",
			stateHeader +
				stateRow("web_8080", "b1", "127.0.0.1", 2, 0) + "\n" +
				stateRow("web_8080", "b2", "127.0.0.2", 0, 0) + "\n" +
				stateRow("web_8443", "b1", "127.0.0.1", 2, 0) + "\n" +
				stateRow("api_9000", "ip6-fd00--1", "fd00::1", 2, 8) + "\n",
			map[string]map[string]ServerState{
				"web_8080": {"b1": up("127.0.0.1"), "b2": {HealthDown, "127.0.0.2"}},
				"web_8443": {"b1": up("127.0.0.1")},
				"api_9000": {"ip6-fd00--1": {HealthDrain, "fd00::1"}},
			},
			"",
		},
		{
			"as TestDumpServerState's rows",
			stateHeader +
				"3 web_8080 1 b1 127.0.0.1 2 0 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"3 web_8080 2 b2 127.0.0.2 0 0 100 100 12 6 3 0 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"3 web_8080 3 b3 127.0.0.3 2 8 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"3 web_8080 4 b4 127.0.0.4 0 1 100 100 3 1 0 0 14 0 0 0 - 8000 - 0 0 - - 0",
			map[string]map[string]ServerState{"web_8080": {
				"b1": up("127.0.0.1"), "b2": {HealthDown, "127.0.0.2"}, "b3": {HealthDrain, "127.0.0.3"}, "b4": {HealthMaint, "127.0.0.4"},
			}},
			"",
		},
		{
			"malformed lines skipped",
			stateHeader +
				"3 web_8080 1 short 127.0.0.1 2\n" + // too few fields
				"3 web_8080 2 badop 127.0.0.2 x 0 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"3 web_8080 3 badadmin 127.0.0.3 2 0x8 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"# 3 web_8080 4 commented 127.0.0.4 2 0 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0\n" +
				"\n   \n" +
				stateRow("web_8080", "good", "127.0.0.5", 2, 0) + "\n",
			map[string]map[string]ServerState{"web_8080": {"good": up("127.0.0.5")}},
			"",
		},
		{"header only", stateHeader, map[string]map[string]ServerState{}, ""},
		{"empty", "", map[string]map[string]ServerState{}, ""},
		{"CRLF line ends, tabs", strings.ReplaceAll(strings.ReplaceAll(one(2, 0), "\n", "\r\n"), " ", "\t"), map[string]map[string]ServerState{"web_8080": {"b1": up("127.0.0.1")}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			if got := ParseServersState(tc.out); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseServersState =\n  %v\nwant\n  %v", got, tc.want)
			}
		})
	}
}

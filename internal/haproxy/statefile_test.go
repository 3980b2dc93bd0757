package haproxy

import (
	"strings"
	"testing"
)

// stateRuntime answers `show servers state` with a fixed text, as client-native returns it.
type stateRuntime struct {
	RuntimeClient
	answer string
}

func (s stateRuntime) ExecuteRaw(string) ([]string, error) { return []string{s.answer}, nil }

// TestDumpServerState: haproxy 2.6 rejects the whole server-state file when its last line has
// no newline (server_state.c: "corrupted global server state file"), and client-native trims
// it, so the dump must put it back, or nothing survives a reload. Servers clbd put in
// maintenance to drain them are left out, so that a member registered again while it drained
// does not start the next worker in maintenance; health (down) and drain states are kept.
func TestDumpServerState(t *testing.T) {
	const header = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
	const (
		up    = "3 web_8080 1 b1 127.0.0.1 2 0 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0"
		down  = "3 web_8080 2 b2 127.0.0.2 0 0 100 100 12 6 3 0 6 0 0 0 - 8000 - 0 0 - - 0"
		drain = "3 web_8080 3 b3 127.0.0.3 2 8 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0"
		maint = "3 web_8080 4 b4 127.0.0.4 0 1 100 100 3 1 0 0 14 0 0 0 - 8000 - 0 0 - - 0"
	)
	for _, tc := range []struct{ name, answer, want string }{
		{"no servers, trimmed", header, header + "\n"},
		{"servers, trimmed", header + "\n" + up, header + "\n" + up + "\n"},
		{"already terminated, blank lines", header + "\n" + up + "\n\n", header + "\n" + up + "\n"},
		{"forced maintenance left out", header + "\n" + up + "\n" + down + "\n" + drain + "\n" + maint, header + "\n" + up + "\n" + down + "\n" + drain + "\n"},
		{"only a server in maintenance", header + "\n" + maint, header + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			err := DumpServerState(stateRuntime{answer: tc.answer}, func(b []byte) error { got = string(b); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("dumped %q, want %q", got, tc.want)
			}
			if !strings.HasSuffix(got, "\n") {
				t.Errorf("dump does not end with a newline: haproxy would ignore all of it")
			}
		})
	}
}

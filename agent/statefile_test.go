package agent

import (
	"strings"
	"testing"
)

// stateRuntime answers `show servers state` with a fixed text, as client-native returns it.
type stateRuntime struct {
	runtimeClient
	answer string
}

func (s stateRuntime) ExecuteRaw(string) ([]string, error) { return []string{s.answer}, nil }

// TestDumpServerStateEndsWithNewline: haproxy 2.6 rejects the whole server-state file when its
// last line has no newline (server_state.c: "corrupted global server state file"), and
// client-native trims it, so the dump must put it back, or nothing survives a reload.
func TestDumpServerStateEndsWithNewline(t *testing.T) {
	const header = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
	const server = "3 web_8080 1 b1 127.0.0.1 2 0 100 100 12 6 3 4 6 0 0 0 - 8000 - 0 0 - - 0"
	for _, tc := range []struct{ name, answer, want string }{
		{"no servers, trimmed", header, header + "\n"},
		{"servers, trimmed", header + "\n" + server, header + "\n" + server + "\n"},
		{"already terminated", header + "\n" + server + "\n", header + "\n" + server + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			err := dumpServerState(stateRuntime{answer: tc.answer}, func(b []byte) error { got = string(b); return nil })
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

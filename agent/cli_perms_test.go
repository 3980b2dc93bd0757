package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOperatorCLIFilePermissions lays out the files as the clb-server package does (config
// world-readable and root's; state dir 0750, password and keys file 0600, all owned by the
// service user) and runs the real clbd binary's `clbd status` as root, as the service user and
// as another user. Nothing listens, so a caller that could read its credentials gets to the
// connection and exits 69; one that could not exits 77 with the hint to run as root or
// clb-server, before any request.
func TestOperatorCLIFilePermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run commands as other users")
	}
	const serviceUID, otherUID = 65534, 65533 // stand-ins for clb-server and a stranger
	dir, err := os.MkdirTemp("", "clb-perms-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // MkdirTemp makes it 0700, like /etc/clb is not
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "clbd")
	data, err := os.ReadFile(binary(t, "clbd")) // the build dir is root's 0700
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, bin, string(data), 0o755)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o750); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(state, "keys.yaml")
	pw := filepath.Join(state, "password")
	writeFile(t, keys, "keys:\n  - id: ops\n    secret: ops-secret-0123456789abcdef\n    scope: admin\n", 0o600)
	writeFile(t, pw, "the shared password\n", 0o600)
	for _, p := range []string{state, keys, pw} {
		if err := os.Chown(p, serviceUID, serviceUID); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "clbd.yaml")
	writeFile(t, cfg, fmt.Sprintf("listen: 127.0.0.1:%d\nstate_dir: %s\nkeys_file: %s\npassword_file: %s\n", freePort(t), state, keys, pw), 0o644)

	run := func(uid uint32, args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--config", cfg}, args...)...)
		cmd.Dir = dir
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, NoSetGroups: true}}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		} else if err != nil {
			t.Fatalf("run clbd as %d: %v", uid, err)
		}
		return 0, out.String()
	}
	for _, tt := range []struct {
		who  string
		uid  uint32
		args []string
		code int
		want string
	}{
		{"root", 0, []string{"status"}, 69, "is clbd running?"},
		{"the service user", serviceUID, []string{"status"}, 69, "is clbd running?"},
		{"the service user with the password", serviceUID, []string{"status", "--key", "default"}, 69, "is clbd running?"},
		{"another user", otherUID, []string{"status"}, 77, "run this as root or as the clb-server user"},
		{"another user with the password", otherUID, []string{"members", "--key", "default", "web"}, 77, "password file " + pw + ": permission denied"},
	} {
		code, out := run(tt.uid, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("clbd %v as %s: exit %d, %q; want %d and %q", tt.args, tt.who, code, out, tt.code, tt.want)
		}
	}
}

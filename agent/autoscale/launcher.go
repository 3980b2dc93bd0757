package autoscale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	shellwords "github.com/mattn/go-shellwords"

	"clb/agent/config"
	"clb/internal/haproxy"
	"clb/internal/model"
)

// launchEnv is the environment of a launcher command: clbd's own, plus what the launch
// configuration and the group say about the instance.
func launchEnv(group string, g config.Group, lcName string, lc config.LaunchConfiguration, inst *Instance) []string {
	env := append(os.Environ(),
		"CLB_GROUP="+group,
		"CLB_ZONE="+inst.Zone,
		"CLB_INSTANCE_NAME="+inst.Name,
		"CLB_LAUNCH_CONFIGURATION="+lcName,
		"CLB_IMAGE_ID="+lc.ImageID,
		"CLB_INSTANCE_TYPE="+lc.InstanceType,
		"CLB_KEY_NAME="+lc.KeyName,
		"CLB_SECURITY_GROUPS="+strings.Join(lc.SecurityGroups, ","),
		"CLB_USER_DATA="+lc.UserData,
		"CLB_SERVICES="+strings.Join(g.Services, ","),
	)
	if inst.ID != "" {
		env = append(env, "CLB_INSTANCE_ID="+inst.ID)
	}
	return env
}

// runCommand runs a launcher command line (shell words, no shell) with a timeout and returns
// its standard output; a failure carries the trimmed output of both streams.
func runCommand(ctx context.Context, cmdline string, timeout time.Duration, env []string) (string, error) {
	argv, err := shellwords.Parse(cmdline)
	if err != nil || len(argv) == 0 {
		return "", fmt.Errorf("command %q: want a command line", model.Clip(cmdline, 80))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.WaitDelay = time.Second
	var stdout, both bytes.Buffer
	var mu sync.Mutex // stdout and stderr are copied by goroutines of their own
	cmd.Stdout = &multi{mu: &mu, a: &stdout, b: &both}
	cmd.Stderr = &multi{mu: &mu, b: &both}
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return "", fmt.Errorf("run %s: %w: %s", argv[0], err, haproxy.TrimOutput(both.Bytes()))
	}
	return stdout.String(), nil
}

// multi writes to two buffers (stdout alone, and stdout and stderr together) under one lock.
type multi struct {
	mu   *sync.Mutex
	a, b *bytes.Buffer
}

func (m *multi) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.a != nil {
		m.a.Write(p)
	}
	return m.b.Write(p)
}

// instanceID reads the id a launch command printed: its last non-empty line (empty: none).
func instanceID(out string) (string, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := strings.TrimSpace(lines[len(lines)-1])
	if id == "" {
		return "", nil
	}
	if err := model.ValidateMemberName(id); err != nil {
		return "", fmt.Errorf("launch printed instance id %q: %w", model.Clip(id, 60), err)
	}
	return id, nil
}

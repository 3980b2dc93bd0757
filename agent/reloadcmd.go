package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	shellwords "github.com/mattn/go-shellwords"

	"clb/internal/haproxy"
)

// commandReloader runs --reload-cmd, parsed as shell words (quotes and escapes as a shell
// would, no shell started), with a timeout; its output goes into the error when it fails.
type commandReloader struct {
	argv    []string
	timeout time.Duration
}

func newCommandReloader(cmdline string, timeout time.Duration) (*commandReloader, error) {
	argv, err := shellwords.Parse(cmdline)
	if err != nil {
		return nil, fmt.Errorf("reload_cmd %q: %w", cmdline, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("reload_cmd %q: no command", cmdline)
	}
	return &commandReloader{argv: argv, timeout: timeout}, nil
}

func (c *commandReloader) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s", c.timeout)
		}
		return fmt.Errorf("run %s: %w: %s", c.argv[0], err, haproxy.TrimOutput(out))
	}
	return nil
}

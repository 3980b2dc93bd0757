package reconcile

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	shellwords "github.com/mattn/go-shellwords"

	"clb/internal/haproxy"
)

// CommandReloader runs --reload-cmd, parsed as shell words (quotes and escapes as a shell
// would, no shell started), with a timeout; its output goes into the error when it fails.
type CommandReloader struct {
	argv    []string
	timeout time.Duration
}

func NewCommandReloader(cmdline string, timeout time.Duration) (*CommandReloader, error) {
	argv, err := shellwords.Parse(cmdline)
	if err != nil {
		return nil, fmt.Errorf("reload_cmd %q: %w", cmdline, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("reload_cmd %q: no command", cmdline)
	}
	return &CommandReloader{argv: argv, timeout: timeout}, nil
}

func (c *CommandReloader) Reload(ctx context.Context) error {
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

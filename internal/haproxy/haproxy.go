// Package haproxy is everything in clb that talks to a haproxy binary or
// process: configuration checks (`haproxy -c`), the version, the master CLI
// socket of a master-worker haproxy, and Managed, the haproxy that clbd runs
// and supervises itself in managed mode.
//
// Facts this package relies on were checked against haproxy 2.6.12:
//   - `haproxy -c -q` prints nothing at all for a broken config, so Check runs
//     without -q to be able to report haproxy's own message.
//   - The master CLI keeps a connection open until the client half-closes it,
//     refuses connections for about 100 ms while it re-executes on a reload,
//     and its `reload` command prints nothing: the outcome can only be read
//     from `show proc` afterwards.
//   - In `show proc` the master's "[failed: N]" counts failed reloads since
//     the last successful one (a successful reload resets it to 0), and a
//     worker's reload count is the number of reloads it has outlived, so a
//     freshly forked worker shows 0.
package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by Check when haproxy rejects a configuration.
var ErrInvalidConfig = errors.New("haproxy rejected the configuration")

// ErrBinary is wrapped by Check and Version when the haproxy binary cannot be
// run at all (missing, not executable), as opposed to running and failing.
var ErrBinary = errors.New("haproxy binary cannot be run")

// ErrReloadFailed is wrapped by Managed.Reload when haproxy did not load the
// new configuration; the previous worker keeps serving the old one.
var ErrReloadFailed = errors.New("haproxy reload failed")

// ErrNotRunning is returned by Managed.Reload when no haproxy master is
// running (not started yet, stopped, or between restarts).
var ErrNotRunning = errors.New("haproxy is not running")

const (
	// defaultCommandTimeout bounds haproxy invocations whose context has no
	// deadline; a 10k-server config checks in well under a second.
	defaultCommandTimeout = 30 * time.Second
	// maxOutputLines bounds how much haproxy output goes into an error.
	maxOutputLines = 20
)

// Check runs `bin -c -f cfgPath` and reports whether haproxy accepts the
// configuration. A rejected configuration gives an error wrapping
// ErrInvalidConfig with haproxy's messages; a binary that cannot be started
// gives one wrapping ErrBinary. Without a deadline on ctx, 30 s apply.
func Check(ctx context.Context, bin, cfgPath string) error {
	ctx, cancel := withDefaultTimeout(ctx, defaultCommandTimeout)
	defer cancel()

	// No -q: haproxy 2.6 then suppresses the alerts that say what is wrong.
	cmd := exec.CommandContext(ctx, bin, "-c", "-f", cfgPath)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("check %s: %w", cfgPath, ctxErr)
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("check %s: %w: %w", cfgPath, ErrBinary, err)
	}
	msg := TrimOutput(out)
	if exitErr.ExitCode() == 1 {
		return fmt.Errorf("check %s: %w: %s", cfgPath, ErrInvalidConfig, msg)
	}
	return fmt.Errorf("check %s: %s: %w: %s", cfgPath, bin, err, msg)
}

// versionRE matches the first line of `haproxy -v`; releases before 1.9
// spelled the name "HA-Proxy".
var versionRE = regexp.MustCompile(`(?m)^HA-?Proxy version (\S+)`)

// Version runs `bin -v` and returns haproxy's version string, for example
// "2.6.12-1+deb12u4". Without a deadline on ctx, 30 s apply.
func Version(ctx context.Context, bin string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx, defaultCommandTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, bin, "-v")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", fmt.Errorf("version of %s: %w", bin, ctxErr)
		}
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return "", fmt.Errorf("version of %s: %w: %w", bin, ErrBinary, err)
		}
		return "", fmt.Errorf("version of %s: %w: %s", bin, err, TrimOutput(out))
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return "", fmt.Errorf("version of %s: %w", bin, err)
	}
	return v, nil
}

// ParseVersion extracts the version from the output of `haproxy -v`.
func ParseVersion(out string) (string, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("no version in output %q", firstLine(out))
	}
	return m[1], nil
}

// logPrefixRE matches haproxy's message prefix "[ALERT]    (1234) : ".
var logPrefixRE = regexp.MustCompile(`^\[([A-Z]+)\]\s+\(\d+\)\s*:\s*`)

// TrimOutput turns haproxy's output into a one-line error detail: it drops
// the NOTICE lines that every run prints (version, executable path), removes
// the process id from message prefixes, keeps at most 20 lines and joins
// them with "; ".
func TrimOutput(out []byte) string {
	var lines []string
	more := 0
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := logPrefixRE.FindStringSubmatch(line); m != nil {
			if m[1] == "NOTICE" {
				continue
			}
			line = "[" + m[1] + "] " + line[len(m[0]):]
		}
		if len(lines) == maxOutputLines {
			more++
			continue
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	s := strings.Join(lines, "; ")
	if more > 0 {
		s += fmt.Sprintf("; ... (%d more lines)", more)
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// withDefaultTimeout applies d to ctx unless ctx already has a deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

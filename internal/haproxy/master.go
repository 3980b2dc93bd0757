package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// dialRetryFor covers the window in which the master refuses
	// connections while it re-executes itself on a reload (~100 ms seen).
	dialRetryFor   = time.Second
	dialRetryEvery = 5 * time.Millisecond
	// defaultSocketTimeout bounds a master CLI exchange when ctx has no
	// deadline.
	defaultSocketTimeout = 10 * time.Second
)

// MasterCommand sends one command to the haproxy master CLI at sockPath and
// returns everything the master answered. It half-closes the connection after
// the command, because the 2.6 master otherwise keeps it open waiting for
// more, and it retries the dial for about a second, because the master
// refuses connections while it reloads. Without a deadline on ctx, 10 s apply
// to the whole exchange.
func MasterCommand(ctx context.Context, sockPath, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return "", fmt.Errorf("master command %q: contains a line break", cmd)
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultSocketTimeout)
	defer cancel()

	conn, err := dialRetry(ctx, sockPath)
	if err != nil {
		return "", fmt.Errorf("master command %q: %w", cmd, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("master command %q: %w", cmd, err)
		}
	}
	// Unblock the read below if ctx is cancelled before its deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("master command %q: write: %w", cmd, err)
	}
	if err := conn.CloseWrite(); err != nil {
		return "", fmt.Errorf("master command %q: close write: %w", cmd, err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return string(out), fmt.Errorf("master command %q: read: %w", cmd, err)
	}
	return string(out), nil
}

func dialRetry(ctx context.Context, sockPath string) (*net.UnixConn, error) {
	var d net.Dialer
	giveUp := time.Now().Add(dialRetryFor)
	for {
		c, err := d.DialContext(ctx, "unix", sockPath)
		if err == nil {
			return c.(*net.UnixConn), nil
		}
		if ctx.Err() != nil || time.Now().After(giveUp) {
			return nil, err
		}
		t := time.NewTimer(dialRetryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// Proc is one line of the master CLI's `show proc`.
type Proc struct {
	PID int
	// Type is "master", "worker" or "program".
	Type string
	// Name is the program's name for a program, and Type otherwise.
	Name string
	// Reloads is, for the master, the number of reloads since it started;
	// for a worker, the number of reloads it has outlived (0 = newest).
	Reloads int
	// Failed is the master's count of failed reloads since the last
	// successful one; always 0 for other processes.
	Failed int
	Uptime time.Duration
	// Version is the haproxy version the process runs; empty for programs.
	Version string
	// Old marks a worker left from a previous reload that is still
	// finishing its connections.
	Old bool
}

// ParseShowProc parses the output of `show proc` on the haproxy master CLI.
// The output must contain the master's line.
func ParseShowProc(out string) ([]Proc, error) {
	var procs []Proc
	section := "master"
	haveMaster := false
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#<"):
			continue // column header
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		p, err := parseProcLine(line, section)
		if err != nil {
			return nil, fmt.Errorf("show proc line %d: %w", i+1, err)
		}
		if p.Type == "master" {
			haveMaster = true
		}
		procs = append(procs, p)
	}
	if !haveMaster {
		return nil, fmt.Errorf("show proc: no master in output %q", firstLine(out))
	}
	return procs, nil
}

// parseProcLine parses "<pid> <type> <reloads> [failed: N] <uptime> <version>".
func parseProcLine(line, section string) (Proc, error) {
	f := strings.Fields(line)
	var p Proc
	if len(f) < 5 {
		return p, fmt.Errorf("%q: want at least 5 fields", line)
	}
	var err error
	if p.PID, err = strconv.Atoi(f[0]); err != nil || p.PID <= 0 {
		return p, fmt.Errorf("%q: bad pid", line)
	}
	if p.Reloads, err = strconv.Atoi(f[2]); err != nil {
		return p, fmt.Errorf("%q: bad reload count", line)
	}
	p.Name = f[1]
	rest := f[3:]
	if rest[0] == "[failed:" {
		if len(rest) < 4 {
			return p, fmt.Errorf("%q: want uptime and version after failed count", line)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(rest[1], "]"))
		if err != nil || !strings.HasSuffix(rest[1], "]") {
			return p, fmt.Errorf("%q: bad failed count", line)
		}
		p.Failed = n
		rest = rest[2:]
	}
	if len(rest) != 2 {
		return p, fmt.Errorf("%q: want uptime and version", line)
	}
	if p.Uptime, err = parseUptime(rest[0]); err != nil {
		return p, fmt.Errorf("%q: %w", line, err)
	}
	if rest[1] != "-" {
		p.Version = rest[1]
	}
	switch section {
	case "master":
		p.Type = p.Name
	case "workers", "old workers":
		p.Type = p.Name
		p.Old = section == "old workers"
	case "programs":
		p.Type = "program"
	default:
		return p, fmt.Errorf("%q: unknown section %q", line, section)
	}
	return p, nil
}

var uptimeRE = regexp.MustCompile(`^(\d+)d(\d+)h(\d+)m(\d+)s$`)

// parseUptime parses haproxy's "0d00h00m01s".
func parseUptime(s string) (time.Duration, error) {
	m := uptimeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("bad uptime %q", s)
	}
	var n [4]int
	for i := range n {
		v, err := strconv.Atoi(m[i+1])
		if err != nil {
			return 0, fmt.Errorf("bad uptime %q", s)
		}
		n[i] = v
	}
	return time.Duration(((n[0]*24+n[1])*60+n[2])*60+n[3]) * time.Second, nil
}

// procState is what Managed needs from `show proc`.
type procState struct {
	master  Proc
	workers []Proc // current workers, not old ones
}

func (s procState) hasWorker(notIn map[int]bool) bool {
	for _, w := range s.workers {
		if !notIn[w.PID] {
			return true
		}
	}
	return false
}

func (s procState) workerPIDs() map[int]bool {
	m := make(map[int]bool, len(s.workers))
	for _, w := range s.workers {
		m[w.PID] = true
	}
	return m
}

func showProc(ctx context.Context, sockPath string) (procState, error) {
	out, err := MasterCommand(ctx, sockPath, "show proc")
	if err != nil {
		return procState{}, err
	}
	procs, err := ParseShowProc(out)
	if err != nil {
		return procState{}, err
	}
	var s procState
	for _, p := range procs {
		switch {
		case p.Type == "master":
			s.master = p
		case p.Type == "worker" && !p.Old:
			s.workers = append(s.workers, p)
		}
	}
	if s.master.PID == 0 {
		return s, errors.New("show proc: no master")
	}
	return s, nil
}

package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// MapEntry is one line of a haproxy map file: the key (no white space) and the value (the
// rest of the line).
type MapEntry struct {
	Key, Value string
}

// FormatMap renders entries as a map file: "key value" lines in order. The output is what
// ApplyMap loads at runtime, so a reload from the file changes nothing.
func FormatMap(entries []MapEntry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.WriteString(e.Key)
		if e.Value != "" {
			b.WriteByte(' ')
			b.WriteString(e.Value)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseMap reads a map file as haproxy does: blank lines and lines starting with # are
// skipped, the key ends at the first space or tab, the value is the rest of the line without
// its surrounding white space.
func ParseMap(data []byte) []MapEntry {
	var out []MapEntry
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		t := strings.TrimLeft(line, " \t")
		if t == "" || t[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(t, " ")
		if i := strings.IndexByte(k, '\t'); i >= 0 {
			k, v = t[:i], t[i+1:]
		}
		out = append(out, MapEntry{Key: k, Value: strings.Trim(v, " \t")})
	}
	return out
}

// validMapEntry refuses what cannot travel as one payload line (or one map file line).
func validMapEntry(e MapEntry) error {
	if e.Key == "" || strings.ContainsAny(e.Key, " \t\r\n") || e.Key[0] == '#' {
		return fmt.Errorf("map key %q: must be non-empty, without white space, not starting with #", e.Key)
	}
	if strings.ContainsAny(e.Value, "\r\n") || strings.TrimSpace(e.Value) != e.Value {
		return fmt.Errorf("map value %q of key %q: one line, no surrounding white space", e.Value, e.Key)
	}
	return nil
}

// AdminCommand sends one command to haproxy's admin (stats) socket and returns its answer
// (the socket closes after one command in non-interactive mode). A payload (lines after a
// command ending in "<<") is sent with the command and ended by an empty line. Without a
// deadline on ctx, 10 s apply.
func AdminCommand(ctx context.Context, sock, cmd string, payload ...string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx, defaultSocketTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return "", fmt.Errorf("admin socket %s: %w", sock, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	var b strings.Builder
	b.WriteString(cmd)
	if len(payload) > 0 {
		b.WriteString(" <<\n")
		for _, l := range payload {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", fmt.Errorf("admin socket %s: %s: write: %w", sock, firstWord(cmd, 3), err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return string(out), fmt.Errorf("admin socket %s: %s: read: %w", sock, firstWord(cmd, 3), err)
	}
	return string(out), nil
}

func firstWord(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

// MapChunkBytes bounds one `add map` payload. haproxy 2.6 reads a command and its payload
// into one buffer of tune.bufsize (16 KiB): a bigger payload is dropped without a word (and
// committing that version would empty the map), so ApplyMap stays well below.
const MapChunkBytes = 12000

// ErrMapApply is wrapped by every ApplyMap failure: the version was cleared, the map serves
// what it served before, and the caller falls back to a reload (the file is already right).
var ErrMapApply = errors.New("runtime map update failed")

// ApplyMap replaces the contents of the map loaded from mapPath (the path exactly as the
// configuration names it) with entries, atomically, through the admin socket sock: `prepare
// map` makes a new version, `add map @V` fills it in payloads of at most MapChunkBytes,
// `show map @V` must then list exactly len(entries) entries (entry_cnt is not trusted: it
// drifts on refused adds), and `commit map @V` makes it live for the next request. On any
// error the version is cleared (`clear map @V`) and nothing changes. The map file itself is
// the caller's to write (atomically), before or after.
func ApplyMap(ctx context.Context, sock, mapPath string, entries []MapEntry) error {
	for _, e := range entries {
		if err := validMapEntry(e); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMapApply, mapPath, err)
		}
		if len(e.Key)+len(e.Value)+2 > MapChunkBytes {
			return fmt.Errorf("%w: %s: entry %.40q... of %d bytes: at most %d", ErrMapApply, mapPath, e.Key, len(e.Key)+len(e.Value)+1, MapChunkBytes-2)
		}
	}
	if strings.ContainsAny(mapPath, " \t\r\n;") {
		return fmt.Errorf("%w: map path %q: no white space or ;", ErrMapApply, mapPath)
	}
	out, err := AdminCommand(ctx, sock, "prepare map "+mapPath)
	if err != nil {
		return fmt.Errorf("%w: prepare map %s: %w", ErrMapApply, mapPath, err)
	}
	const created = "New version created:"
	out = strings.TrimSpace(out)
	if !strings.HasPrefix(out, created) {
		return fmt.Errorf("%w: prepare map %s: %s", ErrMapApply, mapPath, trimReply(out))
	}
	ver, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out, created)))
	if err != nil {
		return fmt.Errorf("%w: prepare map %s: %q: %v", ErrMapApply, mapPath, out, err)
	}
	v := "@" + strconv.Itoa(ver)
	if err := fillVersion(ctx, sock, mapPath, v, entries); err != nil {
		// Best effort: an uncommitted version is invisible anyway, and the next prepare
		// starts a new one; clearing frees its memory.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		AdminCommand(cctx, sock, "clear map "+v+" "+mapPath)
		cancel()
		return fmt.Errorf("%w: %s version %d: %w", ErrMapApply, mapPath, ver, err)
	}
	return nil
}

func fillVersion(ctx context.Context, sock, mapPath, v string, entries []MapEntry) error {
	var chunk []string
	size := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		out, err := AdminCommand(ctx, sock, "add map "+v+" "+mapPath, chunk...)
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(out); s != "" {
			return fmt.Errorf("add map: %s", trimReply(s))
		}
		chunk, size = chunk[:0], 0
		return nil
	}
	for _, e := range entries {
		line := e.Key
		if e.Value != "" {
			line += " " + e.Value
		}
		if size+len(line)+1 > MapChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		chunk = append(chunk, line)
		size += len(line) + 1
	}
	if err := flush(); err != nil {
		return err
	}
	got, err := ShowMap(ctx, sock, v+" "+mapPath)
	if err != nil {
		return err
	}
	if len(got) != len(entries) {
		return fmt.Errorf("show map: the new version holds %d entries, want %d", len(got), len(entries))
	}
	out, err := AdminCommand(ctx, sock, "commit map "+v+" "+mapPath)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("commit map: %s", trimReply(s))
	}
	return nil
}

// ShowMap lists the entries of a loaded map (`show map MAP`; MAP may be "@V PATH" for a
// version), in haproxy's order.
func ShowMap(ctx context.Context, sock, mapRef string) ([]MapEntry, error) {
	out, err := AdminCommand(ctx, sock, "show map "+mapRef)
	if err != nil {
		return nil, fmt.Errorf("show map %s: %w", mapRef, err)
	}
	var entries []MapEntry
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		// 0x55d1c1c0 KEY VALUE
		ptr, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(ptr, "0x") {
			return nil, fmt.Errorf("show map %s: %s", mapRef, trimReply(out))
		}
		k, val, _ := strings.Cut(rest, " ")
		entries = append(entries, MapEntry{Key: k, Value: val})
	}
	return entries, nil
}

// CheckMap compares the map haproxy has loaded from mapPath with want (a map file's entries,
// in order): after a reload, or to decide whether a runtime apply is needed at all. The error
// names the first difference.
func CheckMap(ctx context.Context, sock, mapPath string, want []MapEntry) error {
	got, err := ShowMap(ctx, sock, mapPath)
	if err != nil {
		return err
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Errorf("map %s: entry %d: loaded %q %q, want %q %q", mapPath, i+1, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("map %s: %d entries loaded, want %d", mapPath, len(got), len(want))
	}
	return nil
}

func trimReply(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

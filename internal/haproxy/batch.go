package haproxy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Batch is a RuntimeClient that sends the changes it is given in one connection: each call
// is queued as a CLI command, and Flush sends them all on one line, separated by ';' (haproxy
// runs them in order), and reads every answer at once. One admin-socket connection per apply
// instead of three or four per member: client-native opens a connection for every command.
//
// Commands whose answer decides what comes next go through at once, after a Flush:
// DeleteServer (it answers "still has connections") and ExecuteRaw. A batch whose answer
// holds an error fails as a whole; the reconciler then reloads, which makes haproxy match the
// file whatever part of the batch ran.
type Batch struct {
	rt    RuntimeClient
	queue []string
	size  int
}

// maxBatch bounds one line of commands (haproxy reads CLI lines into a buffer of tune.bufsize,
// 16 KiB by default).
const maxBatch = 8 << 10

// NewBatch queues the changes for rt.
func NewBatch(rt RuntimeClient) *Batch { return &Batch{rt: rt} }

func (b *Batch) add(cmd string) error {
	if b.size+len(cmd)+1 > maxBatch {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	b.queue = append(b.queue, cmd)
	b.size += len(cmd) + 1
	return nil
}

// Flush sends the queued commands; an answer at severity error or worse fails the batch.
func (b *Batch) Flush() error {
	if len(b.queue) == 0 {
		return nil
	}
	line := strings.Join(b.queue, ";")
	n := len(b.queue)
	b.queue, b.size = nil, 0
	out, err := b.rt.ExecuteRaw(line)
	if err != nil {
		return fmt.Errorf("runtime API, %d commands: %w", n, err)
	}
	var errs []error
	for _, l := range strings.Split(strings.Join(out, "\n"), "\n") {
		l = strings.TrimSpace(l)
		if len(l) > 4 && l[0] == '[' && l[2] == ']' && l[3] == ':' && l[1] >= '0' && l[1] <= '3' {
			errs = append(errs, errors.New(strings.TrimSpace(l[4:])))
		}
	}
	if len(errs) > 0 {
		if len(line) > 200 {
			line = line[:200] + "..."
		}
		return fmt.Errorf("runtime API, %d commands (%s): %w", n, line, errors.Join(errs...))
	}
	return nil
}

// AddServer queues `add server`.
func (b *Batch) AddServer(backend, name, attributes string) error {
	return b.add("add server " + backend + "/" + name + " " + attributes)
}

// DeleteServer flushes the queue, then deletes at once.
func (b *Batch) DeleteServer(backend, name string) error {
	if err := b.Flush(); err != nil {
		return err
	}
	return b.rt.DeleteServer(backend, name)
}

// SetServerState queues `set server B/S state ...`.
func (b *Batch) SetServerState(backend, server, state string) error {
	return b.add("set server " + backend + "/" + server + " state " + state)
}

// SetServerWeight queues `set server B/S weight ...`.
func (b *Batch) SetServerWeight(backend, server, weight string) error {
	return b.add("set server " + backend + "/" + server + " weight " + weight)
}

// SetServerAddr queues `set server B/S addr IP port P`.
func (b *Batch) SetServerAddr(backend, server, ip string, port int) error {
	return b.add("set server " + backend + "/" + server + " addr " + ip + " port " + strconv.Itoa(port))
}

// EnableServerHealth queues `enable health`.
func (b *Batch) EnableServerHealth(backend, server string) error {
	return b.add("enable health " + backend + "/" + server)
}

// ExecuteRaw flushes the queue, then runs command at once.
func (b *Batch) ExecuteRaw(command string) ([]string, error) {
	if err := b.Flush(); err != nil {
		return nil, err
	}
	return b.rt.ExecuteRaw(command)
}

// Package store keeps the membership durable: which members are registered in which service.
// Every change is written to disk (temp file, fsync, rename, directory fsync) before the call
// that made it returns, so a crash or restart of clbd loses nothing that was acknowledged.
//
// Writes are group commits. A change is first staged in memory; the first caller with no
// write in progress writes the state file, and callers that arrive during that write stage
// their changes on top and share the next single write, which one of them does. So a burst of
// concurrent registrations costs a few writes instead of one each, and a caller waits for at
// most the write in progress and the one that carries its change. Reads see only the state
// that is on disk; the decisions of the mutating calls (changed or not, not found, lapsed)
// are taken against the staged state, so concurrent calls behave as if run one after the
// other. A failed write drops its batch and every batch staged on top: their callers get an
// error wrapping ErrNotSaved and the cause, and memory goes back to what is on disk.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"clb/internal/atomicfile"
	"clb/internal/model"
)

// FileName is the state file inside the state directory.
const FileName = "state.json"

const formatVersion = 1

// ErrNotFound is returned when a member to remove is not registered.
var ErrNotFound = errors.New("not found")

// Store is the membership state. It is safe for concurrent use; concurrent changes are
// written together (see the package comment) and none is lost.
type Store struct {
	path string
	// write replaces the state file durably: atomicfile.Write, which tests wrap to count the
	// writes, hold one or make it fail.
	write func(path string, data []byte, perm os.FileMode) error

	mu  sync.Mutex
	gen uint64 // the generation of durable, as in the state file
	// durable is what the state file holds; reads answer from it.
	durable view
	// staged is durable plus the changes of the batch being written and of the pending one;
	// the mutating calls decide against it.
	staged view
	// writing is true from the moment a caller is chosen to write until the last batch is
	// done: while it is, new changes join pending instead of starting a write.
	writing bool
	// inflight is the batch being written; pending collects the changes staged since, for the
	// next write. Either may be nil.
	inflight, pending *batch
	// onStage, when set, is told that staged changed (SetOnStage).
	onStage func()
}

// view is one version of the membership. The maps of one service are never changed once in a
// view, only replaced (so versions share the services that did not change), with one
// exception: a lease renewal moves an expiry in place, in every version (see PutLease).
type view struct {
	services map[string]map[string]model.Member
	// leases holds the members registered with a TTL (see PutLease and Expire). Only the TTL
	// is written to disk; expiry times live in memory, and Open grants every lease a full TTL
	// from start-up.
	leases map[string]map[string]Lease
}

// batch is the changes of the callers that share one write.
type batch struct {
	// state is what the write carries, once it has started.
	state view
	// turn holds one token when the batch is due: the caller that takes it writes the batch.
	turn chan struct{}
	// done is closed when the batch is written or dropped; err is its outcome.
	done chan struct{}
	err  error
}

type file struct {
	Version    int                      `json:"version"`
	Generation uint64                   `json:"generation"`
	Services   map[string]serviceRecord `json:"services"`
}

type serviceRecord struct {
	Members []model.Member `json:"members"`
	// Leases maps the names of leased members to their TTL ("30s"); other members are permanent.
	Leases map[string]string `json:"leases,omitempty"`
}

// Open loads the state from dir (creating dir if needed). A missing state file is an empty
// state; a corrupt one is an error rather than silently losing every member.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open state dir: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), write: atomicfile.Write,
		durable: view{services: map[string]map[string]model.Member{}, leases: map[string]map[string]Lease{}}}
	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err == nil {
		if err := s.load(data); err != nil {
			return nil, fmt.Errorf("read state %s: %w", s.path, err)
		}
	}
	s.staged = s.durable.clone()
	return s, nil
}

func (s *Store) load(data []byte) error {
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	if f.Version != formatVersion {
		return fmt.Errorf("unknown format version %d", f.Version)
	}
	s.gen = f.Generation
	for name, rec := range f.Services {
		ms := map[string]model.Member{}
		for _, m := range rec.Members {
			if err := m.Validate(); err != nil {
				return fmt.Errorf("service %s: %w", name, err)
			}
			ms[m.Name] = m
		}
		s.durable.services[name] = ms
		if err := s.durable.loadLeases(name, rec.Leases, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// Put registers or updates m in service. It reports whether anything changed; an identical
// registration writes nothing. It returns once the change is on disk, written together with
// the changes of concurrent callers; an identical registration that is not on disk yet (a
// concurrent call staged it) waits for the write that carries it, and fails if that does.
func (s *Store) Put(service string, m model.Member) (changed bool, err error) {
	if err := m.Validate(); err != nil {
		return false, err
	}
	s.mu.Lock()
	old, ok := s.staged.services[service][m.Name]
	_, leased := s.staged.leases[service][m.Name]
	if ok && old == m && !leased {
		return false, s.settle(service, m.Name)
	}
	next := cloneMap(s.staged.services[service])
	next[m.Name] = m
	leases := cloneMap(s.staged.leases[service])
	delete(leases, m.Name) // a registration without a TTL is permanent
	s.staged.set(service, next, leases)
	return true, s.commit()
}

// Delete removes member name from service, or returns ErrNotFound. Like Put, it returns once
// the removal is on disk; ErrNotFound because of a concurrent call's removal that is not on
// disk yet waits for that write.
func (s *Store) Delete(service, name string) (model.Member, error) {
	s.mu.Lock()
	m, ok := s.staged.services[service][name]
	if !ok {
		if err := s.settle(service, name); err != nil {
			return model.Member{}, err
		}
		return model.Member{}, fmt.Errorf("member %s of service %s: %w", name, service, ErrNotFound)
	}
	next := cloneMap(s.staged.services[service])
	delete(next, name)
	leases := cloneMap(s.staged.leases[service])
	delete(leases, name)
	s.staged.set(service, next, leases)
	return m, s.commit()
}

// Get returns one member, as on disk: a change still being written is not visible.
func (s *Store) Get(service, name string) (model.Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.durable.services[service][name]
	return m, ok
}

// Snapshot is a consistent copy of the state.
type Snapshot struct {
	Generation uint64
	// Members by service, sorted by name.
	Members map[string][]model.Member
}

// Snapshot returns a copy of the state on disk with its generation, which grows by one with
// every write (a write carries one or more changes).
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable.snapshot(s.gen)
}

// Staged returns the state with the changes being written and those waiting for the next
// write: what Snapshot returns once they are on disk, with the generation it will have then.
// A change here may still fail to be written (then it is gone again, and SetOnStage's
// function is told).
func (s *Store) Staged() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.gen
	if s.inflight != nil {
		gen++
	}
	if s.pending != nil {
		gen++
	}
	return s.staged.snapshot(gen)
}

// SetOnStage sets f, called after a change is staged, before it is written, and after a
// failed write took staged changes back: so that a reader of Staged can act on a change
// while it is being written. f is called without the store's lock and must not block.
func (s *Store) SetOnStage(f func()) {
	s.mu.Lock()
	s.onStage = f
	s.mu.Unlock()
}

func (v view) snapshot(gen uint64) Snapshot {
	snap := Snapshot{Generation: gen, Members: make(map[string][]model.Member, len(v.services))}
	for name, ms := range v.services {
		snap.Members[name] = record(ms).Members
	}
	return snap
}

// commit makes the change just staged durable: it joins the pending batch (the first caller
// with no write in progress writes it at once) and waits for that batch to be written. It is
// called with s.mu held and unlocks it.
func (s *Store) commit() error {
	if s.pending == nil {
		s.pending = &batch{turn: make(chan struct{}, 1), done: make(chan struct{})}
		if !s.writing {
			s.writing = true
			s.pending.turn <- struct{}{}
		}
	}
	b, staged := s.pending, s.onStage
	s.mu.Unlock()
	if staged != nil {
		staged()
	}
	return s.wait(b)
}

// settle is the answer of a call that changes nothing about member name of service but
// decided so against the staged state: nil at once if that member is on disk as staged,
// else the outcome of the last batch, which carries the member's staged state to disk. It
// is called with s.mu held and unlocks it.
func (s *Store) settle(service, name string) error {
	d, st := s.durable.entry(service, name), s.staged.entry(service, name)
	b := s.pending
	if b == nil {
		b = s.inflight
	}
	s.mu.Unlock()
	if d == st || b == nil {
		return nil
	}
	return s.wait(b)
}

// wait returns the outcome of b, writing it if this caller's turn comes first.
func (s *Store) wait(b *batch) error {
	select {
	case <-b.done:
	case <-b.turn:
		s.flush(b)
	}
	return b.err
}

// flush writes b, the pending batch: the whole staged state in one write. On success the
// written state becomes the durable one and the batch staged in the meantime, if any, is handed
// to one of its own callers (so that no caller writes batch after batch for others). On
// failure that batch is dropped too and memory goes back to what is on disk; the callers of
// both get ErrNotSaved wrapped together with the cause.
func (s *Store) flush(b *batch) {
	s.mu.Lock()
	s.pending, s.inflight = nil, b
	b.state = s.staged.clone()
	f := b.state.file(s.gen + 1)
	s.mu.Unlock()

	data, cause := json.MarshalIndent(f, "", "  ")
	if cause != nil {
		cause = fmt.Errorf("encode state: %w", cause)
	} else {
		cause = s.write(s.path, append(data, '\n'), 0o640)
	}
	var err error
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrNotSaved, cause)
	}

	var undone func() // told after the lock is released, when staged changes were taken back
	defer func() {
		if undone != nil {
			undone()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight = nil
	b.err = err
	close(b.done)
	if err != nil {
		s.staged = s.durable.clone()
		undone = s.onStage
		if p := s.pending; p != nil {
			p.err = fmt.Errorf("%w (the write before it failed): %w", ErrNotSaved, cause)
			close(p.done)
			s.pending = nil
		}
		s.writing = false
		return
	}
	s.gen++
	s.durable = b.state
	if s.pending != nil {
		s.pending.turn <- struct{}{}
	} else {
		s.writing = false
	}
}

// set replaces the members and leases of service.
func (v view) set(service string, members map[string]model.Member, leases map[string]Lease) {
	if len(members) > 0 {
		v.services[service] = members
	} else {
		delete(v.services, service)
	}
	if len(leases) > 0 {
		v.leases[service] = leases
	} else {
		delete(v.leases, service)
	}
}

// clone is a new version of v that shares the maps of its services.
func (v view) clone() view {
	return view{services: maps.Clone(v.services), leases: maps.Clone(v.leases)}
}

// entry is what v stores about one member: what Put, PutLease and Delete decide on.
type entry struct {
	member model.Member
	ok     bool
	ttl    time.Duration // 0 for a permanent member
}

func (v view) entry(service, name string) entry {
	m, ok := v.services[service][name]
	return entry{member: m, ok: ok, ttl: v.leases[service][name].TTL}
}

// file is v as the state file holds it. Its maps and slices are v's copies, so it can be
// encoded without s.mu.
func (v view) file(gen uint64) file {
	f := file{Version: formatVersion, Generation: gen, Services: make(map[string]serviceRecord, len(v.services))}
	for name, ms := range v.services {
		f.Services[name] = record(ms).withLeases(v.leases[name])
	}
	return f
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	next := maps.Clone(m)
	if next == nil {
		next = map[K]V{}
	}
	return next
}

func record(ms map[string]model.Member) serviceRecord {
	list := slices.Collect(maps.Values(ms))
	slices.SortFunc(list, func(a, b model.Member) int { return strings.Compare(a.Name, b.Name) })
	return serviceRecord{Members: list}
}

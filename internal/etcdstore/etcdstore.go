// Package etcdstore keeps clb's membership in etcd, so that several clbd nodes share one
// membership: each node writes through transactions guarded by revision and follows every
// change (its own and the other nodes') through a watch on the key prefix.
//
// Layout under the prefix (default "/clb/"):
//
//	PREFIX members/SERVICE/MEMBER   JSON member, with "ttl" for a lease (then attached to an etcd lease)
//	PREFIX definitions              YAML: services defined through the API, disabled zones
//
// Reads (Snapshot, Get, Definitions) come from an in-memory copy that the watch keeps up to
// date; it is replaced only by a complete fresh read, never cleared, so a node cut off from
// etcd keeps rendering the last membership it knew.
package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"clb/internal/model"
	"clb/internal/store"
)

// Timings of the store's background work.
const (
	// probeInterval is how often the store checks that etcd answers (a quorum read).
	probeInterval = 500 * time.Millisecond
	// maxRetries bounds the attempts of one write that keeps losing races.
	maxRetries = 50
)

// Config says how to reach etcd.
type Config struct {
	Endpoints []string
	// Prefix starts every key; it ends with "/".
	Prefix string
	// Timeout bounds connecting and each read or write.
	Timeout            time.Duration
	Username, Password string
	TLS                *tls.Config
	Logger             *slog.Logger
}

// Store is the membership in etcd. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger

	changes chan struct{} // a change arrived (buffer 1: a pending notification covers all)
	resync  chan struct{} // ask Run to re-read everything

	mu       sync.Mutex
	members  map[string]map[string]entry
	defs     []byte
	rev      int64 // revision the copy reflects
	synced   bool  // the copy was read from etcd at least once
	advanced chan struct{}
	// Availability, as the last operation or probe found it.
	available bool
	lastErr   error
	since     time.Time
	resyncs   uint64
}

type entry struct {
	m     model.Member
	ttl   time.Duration
	lease clientv3.LeaseID
}

// record is the JSON value of a member key.
type record struct {
	model.Member
	TTL string `json:"ttl,omitempty"`
}

// Open connects to etcd (lazily: Open does not wait for it). Run must run for reads to follow
// etcd; Sync does the first read.
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/clb/"
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.Timeout,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: cfg.Timeout,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		Logger:               zap.NewNop(),
		// A stopped member is skipped at once rather than after the default backoff.
		BackoffWaitBetween: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return &Store{
		cli: cli, prefix: cfg.Prefix, timeout: cfg.Timeout, log: cfg.Logger,
		changes: make(chan struct{}, 1), resync: make(chan struct{}, 1),
		members: map[string]map[string]entry{}, advanced: make(chan struct{}),
		since: time.Now(),
	}, nil
}

// Close closes the connection to etcd.
func (s *Store) Close() error { return s.cli.Close() }

// Changes receives a value after the copy changed: a write of any node, a lease that
// expired, a fresh read.
func (s *Store) Changes() <-chan struct{} { return s.changes }

func (s *Store) memberKey(service, name string) string {
	return s.prefix + "members/" + service + "/" + name
}

func (s *Store) defsKey() string { return s.prefix + "definitions" }

// opCtx bounds one read or write: twice the dial timeout, so that a burst that makes etcd
// slow is not taken for an outage (the probe, with the dial timeout, decides that).
func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*s.timeout)
}

// Status is the store's state for /v1/status and metrics.
type Status struct {
	Type      string    `json:"type"`
	Endpoints []string  `json:"endpoints"`
	Prefix    string    `json:"prefix"`
	Available bool      `json:"available"`
	Synced    bool      `json:"synced"`
	Error     string    `json:"error,omitempty"`
	Since     time.Time `json:"since"`
	Revision  int64     `json:"revision"`
	Resyncs   uint64    `json:"resyncs"`
}

// Status reports whether etcd answers and which revision the copy reflects.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Type: "etcd", Endpoints: s.cli.Endpoints(), Prefix: s.prefix, Available: s.available, Synced: s.synced,
		Since: s.since, Revision: s.rev, Resyncs: s.resyncs}
	if s.lastErr != nil {
		st.Error = s.lastErr.Error()
	}
	return st
}

// Ready is nil once the copy was read from etcd: before that, an empty copy means "unknown",
// not "no members", and must not be rendered.
func (s *Store) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced {
		msg := "membership not read from etcd yet"
		if s.lastErr != nil {
			msg += ": " + s.lastErr.Error()
		}
		return fmt.Errorf("%w: %s", store.ErrUnavailable, msg)
	}
	return nil
}

func (s *Store) setAvailable(ok bool, err error) {
	s.mu.Lock()
	was := s.available
	if ok != was {
		s.since = time.Now()
	}
	s.available, s.lastErr = ok, err
	s.mu.Unlock()
	switch {
	case was && !ok:
		s.log.Error("etcd unavailable: haproxy keeps the last membership; registrations are refused", "err", err)
	case !was && ok:
		s.log.Info("etcd available")
		s.requestResync()
	}
}

func (s *Store) requestResync() {
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

// unavailable records a failed operation and returns the error callers see.
func (s *Store) unavailable(what string, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		// A refused connection or a lost leader: fail the next calls fast. A timeout may only
		// mean a slow etcd; the probe tells which.
		s.setAvailable(false, err)
	}
	return fmt.Errorf("%w: %s: %v", store.ErrUnavailable, what, err)
}

// check fails fast while etcd is known to be down, instead of making every caller wait.
func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.available && s.lastErr != nil {
		return fmt.Errorf("%w: %v (since %s)", store.ErrUnavailable, s.lastErr, s.since.Format(time.RFC3339))
	}
	return nil
}

// Run keeps the copy in step with etcd until ctx ends: a full read, then a watch from the
// revision after it. A watch that fails, or finds its revision compacted, or an etcd that
// comes back after an outage, means a fresh full read, which replaces the copy in one step
// (members that stayed are not touched, so nothing is drained by a resync).
func (s *Store) Run(ctx context.Context) error {
	go s.probe(ctx)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rev, err := s.Sync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Debug("etcd read failed; retrying", "err", err, "wait", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			case <-s.resync:
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		err = s.watch(ctx, rev)
		if ctx.Err() == nil {
			s.log.Info("etcd watch ended; reading the membership afresh", "err", err, "revision", rev)
		}
	}
	return nil
}

// probe checks every probeInterval that etcd answers a quorum read, so that /v1/status says
// when it does not and calls fail fast instead of waiting for their timeout.
func (s *Store) probe(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, min(s.timeout, time.Second))
		_, err := s.cli.Get(pctx, s.defsKey(), clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.setAvailable(false, err)
		} else {
			s.setAvailable(true, nil)
		}
	}
}

// Sync reads the whole prefix and replaces the copy with it; it returns the revision read.
// Call it before Run, not while Run runs (Run does its own reads).
func (s *Store) Sync(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, s.unavailable("read membership", err)
	}
	members := map[string]map[string]entry{}
	var defs []byte
	for _, kv := range resp.Kvs {
		if string(kv.Key) == s.defsKey() {
			defs = kv.Value
			continue
		}
		service, e, ok := s.decode(kv)
		if !ok {
			continue
		}
		if members[service] == nil {
			members[service] = map[string]entry{}
		}
		members[service][e.m.Name] = e
	}
	s.mu.Lock()
	changed := !s.synced || !bytes.Equal(defs, s.defs) || !sameMembers(members, s.members)
	s.members, s.defs, s.synced = members, defs, true
	s.resyncs++
	s.advance(resp.Header.Revision)
	s.mu.Unlock()
	s.setAvailable(true, nil)
	if changed {
		s.notify()
	}
	return resp.Header.Revision, nil
}

func sameMembers(a, b map[string]map[string]entry) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]entry) bool {
		return maps.EqualFunc(x, y, func(p, q entry) bool { return p.m == q.m && p.ttl == q.ttl })
	})
}

// advance moves the copy's revision forward and wakes writers waiting for it (mu held).
func (s *Store) advance(rev int64) {
	if rev <= s.rev && s.synced {
		return
	}
	s.rev = rev
	close(s.advanced)
	s.advanced = make(chan struct{})
}

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// decode reads a member key; keys that are not valid members are logged and skipped.
func (s *Store) decode(kv *mvccpb.KeyValue) (string, entry, bool) {
	rest, ok := strings.CutPrefix(string(kv.Key), s.prefix+"members/")
	service, name, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", entry{}, false
	}
	var r record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		s.log.Warn("etcd: member value is not JSON; skipped", "path", string(kv.Key), "err", err)
		return "", entry{}, false
	}
	e := entry{m: r.Member, lease: clientv3.LeaseID(kv.Lease)}
	if r.TTL != "" {
		d, err := time.ParseDuration(r.TTL)
		if err != nil || d <= 0 {
			s.log.Warn("etcd: member has a bad ttl; skipped", "path", string(kv.Key), "ttl", r.TTL)
			return "", entry{}, false
		}
		e.ttl = d
	}
	if err := model.ValidateServiceName(service); err != nil || e.m.Name != name || e.m.Validate() != nil {
		s.log.Warn("etcd: invalid member; skipped", "path", string(kv.Key))
		return "", entry{}, false
	}
	return service, e, true
}

// watch applies the changes after rev until the watch ends (error, compaction, lost leader,
// or a resync asked for after an outage).
func (s *Store) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.resync:
			return errors.New("resync after an outage")
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if resp.CompactRevision != 0 {
				return fmt.Errorf("%w: revision %d compacted (at %d)", rpctypes.ErrCompacted, rev+1, resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return err
			}
			s.applyEvents(resp.Events, resp.Header.Revision)
			rev = resp.Header.Revision
		}
	}
}

func (s *Store) applyEvents(events []*clientv3.Event, rev int64) {
	changed := false
	s.mu.Lock()
	for _, ev := range events {
		if string(ev.Kv.Key) == s.defsKey() {
			if ev.Type == clientv3.EventTypeDelete {
				s.defs = nil
			} else {
				s.defs = slices.Clone(ev.Kv.Value)
			}
			changed = true
			continue
		}
		if ev.Type == clientv3.EventTypePut {
			service, e, ok := s.decode(ev.Kv)
			if !ok {
				continue
			}
			ms := maps.Clone(s.members[service])
			if ms == nil {
				ms = map[string]entry{}
			}
			ms[e.m.Name] = e
			s.members[service] = ms
			changed = true
			continue
		}
		rest, ok := strings.CutPrefix(string(ev.Kv.Key), s.prefix+"members/")
		service, name, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			continue
		}
		if _, ok := s.members[service][name]; !ok {
			continue
		}
		ms := maps.Clone(s.members[service])
		delete(ms, name)
		if len(ms) == 0 {
			delete(s.members, service)
		} else {
			s.members[service] = ms
		}
		changed = true
		if ev.PrevKv != nil && ev.PrevKv.Lease != 0 {
			s.log.Info("member removed from etcd (unregistered or lease expired)", "service", service, "member", name)
		}
	}
	s.advance(rev)
	s.mu.Unlock()
	if changed {
		s.notify()
	}
}

// waitSeen waits until the watch has brought the copy to rev, so that a caller's apply
// includes its own write.
func (s *Store) waitSeen(rev int64) error {
	t := time.NewTimer(2 * s.timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		cur, ch := s.rev, s.advanced
		s.mu.Unlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			s.requestResync()
			return fmt.Errorf("%w: revision %d (this node is at %d)", store.ErrNotSeen, rev, cur)
		}
	}
}

// waitGone waits until the copy no longer holds a member that etcd no longer has.
func (s *Store) waitGone(service, name string) error {
	t := time.NewTimer(2 * s.timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		_, ok := s.members[service][name]
		ch := s.advanced
		s.mu.Unlock()
		if !ok {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			s.requestResync()
			return fmt.Errorf("%w: removal of member %s of service %s", store.ErrNotSeen, name, service)
		}
	}
}

// Get returns one member from the copy.
func (s *Store) Get(service, name string) (model.Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.members[service][name]
	return e.m, ok
}

// Snapshot returns the copy; its generation is the etcd revision it reflects.
func (s *Store) Snapshot() store.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := store.Snapshot{Generation: uint64(s.rev), Members: make(map[string][]model.Member, len(s.members))}
	for service, ms := range s.members {
		list := make([]model.Member, 0, len(ms))
		for _, e := range ms {
			list = append(list, e.m)
		}
		slices.SortFunc(list, func(a, b model.Member) int { return strings.Compare(a.Name, b.Name) })
		snap.Members[service] = list
	}
	return snap
}

// Leases returns the TTL of every leased member (expiry is etcd's business: zero Expires).
func (s *Store) Leases() map[string]map[string]store.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]store.Lease{}
	for service, ms := range s.members {
		for name, e := range ms {
			if e.ttl > 0 {
				if out[service] == nil {
					out[service] = map[string]store.Lease{}
				}
				out[service][name] = store.Lease{TTL: e.ttl}
			}
		}
	}
	return out
}

// Expire does nothing: etcd expires leases itself (also when every clbd is down), and the
// watch removes the members.
func (s *Store) Expire(time.Time) ([]store.Expired, error) { return nil, nil }

// Put registers or updates a permanent member; it reports whether etcd changed.
func (s *Store) Put(service string, m model.Member) (bool, error) {
	return s.put(service, m, 0)
}

// PutLease registers or renews m as a lease of ttl, attached to an etcd lease of its own so
// that it expires even if every clbd is down. A renewal of an unchanged member only keeps
// the etcd lease alive: no write, no revision, nothing for the nodes to apply.
func (s *Store) PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (bool, time.Time, error) {
	if ttl <= 0 {
		return false, time.Time{}, fmt.Errorf("%w: lease TTL %s: want a positive duration", model.ErrInvalid, ttl)
	}
	changed, err := s.put(service, m, ttl)
	return changed, now.Add(ttl), err
}

func encode(m model.Member, ttl time.Duration) []byte {
	r := record{Member: m}
	if ttl > 0 {
		r.TTL = ttl.String()
	}
	b, _ := json.Marshal(r)
	return b
}

// put writes a member with a transaction that holds only if the key is as it was read: two
// nodes writing the same member at once cannot lose an update, the loser reads again.
func (s *Store) put(service string, m model.Member, ttl time.Duration) (bool, error) {
	if err := model.ValidateServiceName(service); err != nil {
		return false, err
	}
	if err := m.Validate(); err != nil {
		return false, err
	}
	if err := s.check(); err != nil {
		return false, err
	}
	key, val := s.memberKey(service, m.Name), encode(m, ttl)
	for attempt := range maxRetries {
		ctx, cancel := s.opCtx()
		changed, rev, done, err := s.tryPut(ctx, key, val, ttl)
		cancel()
		if err != nil {
			return false, err
		}
		if !done {
			lostRace(attempt) // read again
			continue
		}
		if !changed {
			return false, nil
		}
		return true, s.waitSeen(rev)
	}
	return false, fmt.Errorf("%w: member %s of service %s", store.ErrConflict, m.Name, service)
}

func (s *Store) tryPut(ctx context.Context, key string, val []byte, ttl time.Duration) (changed bool, rev int64, done bool, err error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return false, 0, false, s.unavailable("read member", err)
	}
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	var oldLease clientv3.LeaseID
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		oldLease = clientv3.LeaseID(kv.Lease)
		if bytes.Equal(kv.Value, val) {
			if ttl == 0 {
				return false, 0, true, nil
			}
			if oldLease != 0 {
				_, err := s.cli.KeepAliveOnce(ctx, oldLease)
				if err == nil {
					return false, 0, true, nil
				}
				if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
					return false, 0, false, s.unavailable("renew lease", err)
				}
				// The lease lapsed between the read and the renewal: write it anew.
			}
		}
	}
	var opts []clientv3.OpOption
	var lease clientv3.LeaseID
	if ttl > 0 {
		g, err := s.cli.Grant(ctx, int64(math.Ceil(ttl.Seconds())))
		if err != nil {
			return false, 0, false, s.unavailable("grant lease", err)
		}
		lease = g.ID
		opts = append(opts, clientv3.WithLease(lease))
	}
	txn, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(val), opts...)).Commit()
	if err != nil {
		return false, 0, false, s.unavailable("write member", err)
	}
	if !txn.Succeeded {
		s.revoke(lease)
		return false, 0, false, nil
	}
	if oldLease != 0 && oldLease != lease {
		s.revoke(oldLease) // the key moved to its new lease: the old one holds nothing now
	}
	return true, txn.Header.Revision, true, nil
}

// lostRace waits a little after a transaction lost against another writer of the same key,
// more after each loss and at random, so that contending writers spread out.
func lostRace(attempt int) {
	time.Sleep(rand.N(min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)) + 1)
}

// revoke drops a lease that holds no key any more, in the background (best effort: an
// unrevoked lease only lingers until its TTL).
func (s *Store) revoke(id clientv3.LeaseID) {
	if id == 0 {
		return
	}
	go func() {
		ctx, cancel := s.opCtx()
		defer cancel()
		if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.log.Debug("revoke etcd lease", "lease", int64(id), "err", err)
		}
	}()
}

// Delete removes a member (guarded by its revision) and returns it, or store.ErrNotFound.
func (s *Store) Delete(service, name string) (model.Member, error) {
	if err := s.check(); err != nil {
		return model.Member{}, err
	}
	key := s.memberKey(service, name)
	for attempt := range maxRetries {
		ctx, cancel := s.opCtx()
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			cancel()
			return model.Member{}, s.unavailable("read member", err)
		}
		if len(resp.Kvs) == 0 {
			cancel()
			// The copy may still hold it if the deletion by another node is on its way: wait
			// until it is gone from the copy too, so that "not found" also means "not
			// rendered" once the caller's apply is done.
			if err := s.waitGone(service, name); err != nil {
				return model.Member{}, err
			}
			return model.Member{}, fmt.Errorf("member %s of service %s: %w", name, service, store.ErrNotFound)
		}
		kv := resp.Kvs[0]
		var r record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			r.Member = model.Member{Name: name}
		}
		txn, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).Commit()
		cancel()
		if err != nil {
			return model.Member{}, s.unavailable("delete member", err)
		}
		if !txn.Succeeded {
			lostRace(attempt)
			continue
		}
		s.revoke(clientv3.LeaseID(kv.Lease))
		return r.Member, s.waitSeen(txn.Header.Revision)
	}
	return model.Member{}, fmt.Errorf("%w: member %s of service %s", store.ErrConflict, name, service)
}

// Definitions returns the definitions document (YAML) from the copy; nil when there is none.
func (s *Store) Definitions() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.defs)
}

// UpdateDefinitions changes the definitions document with fn, in a transaction guarded by
// its revision (retried when another node changed it meanwhile).
func (s *Store) UpdateDefinitions(fn func(old []byte) ([]byte, error)) error {
	if err := s.check(); err != nil {
		return err
	}
	key := s.defsKey()
	for attempt := range maxRetries {
		ctx, cancel := s.opCtx()
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			cancel()
			return s.unavailable("read definitions", err)
		}
		var old []byte
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(resp.Kvs) > 0 {
			old = resp.Kvs[0].Value
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		next, err := fn(old)
		if err != nil {
			cancel()
			return err
		}
		if bytes.Equal(next, old) {
			cancel()
			return nil
		}
		txn, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(next))).Commit()
		cancel()
		if err != nil {
			return s.unavailable("write definitions", err)
		}
		if txn.Succeeded {
			return s.waitSeen(txn.Header.Revision)
		}
		lostRace(attempt)
	}
	return fmt.Errorf("%w: definitions", store.ErrConflict)
}

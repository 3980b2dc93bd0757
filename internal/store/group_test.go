package store

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"clb/internal/atomicfile"
	"clb/internal/model"
)

var errDiskFull = errors.New("injected: no space left on device")

// disk holds every write of a store until the test lets it go: each write sends on entered,
// then returns what the test sends on release (nil: the real write).
type disk struct {
	writes  atomic.Int64
	entered chan struct{}
	release chan error
}

func holdWrites(s *Store) *disk {
	d := &disk{entered: make(chan struct{}), release: make(chan error)}
	s.write = func(path string, data []byte, perm os.FileMode) error {
		d.writes.Add(1)
		d.entered <- struct{}{}
		if err := <-d.release; err != nil {
			return err
		}
		return atomicfile.Write(path, data, perm)
	}
	return d
}

// waitStaged returns once cond holds for the staged state: the concurrent calls have staged
// their changes and wait for a write.
// It fails the test after 10 s.
func waitStaged(t *testing.T, s *Store, cond func(v view) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		ok := cond(s.staged)
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the concurrent changes were not staged within 10s")
		}
	}
}

// enter waits for the next write to start, and fails the test if none does within 10 s.
func (d *disk) enter(t *testing.T) {
	t.Helper()
	select {
	case <-d.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no write started within 10s")
	}
}

func stagedMembers(n int) func(v view) bool {
	return func(v view) bool {
		total := 0
		for _, ms := range v.services {
			total += len(ms)
		}
		return total == n
	}
}

// outcome is the error c delivers; it fails the test if none comes within 10 s (a call that
// never returns: a lost batch).
func outcome(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("a call did not return within 10s")
		return nil
	}
}

// run calls f in a goroutine and returns its error on a channel.
func run(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

func put(s *Store, service string, m model.Member) func() error {
	return func() error {
		_, err := s.Put(service, m)
		return err
	}
}

// TestGroupCommit: 200 concurrent registrations, the first one's write held until the other
// 199 are staged, take exactly two writes, and all 200 are on disk.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := holdWrites(s)
	const n = 200
	first := run(put(s, "svc0", member(0)))
	d.enter(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		wg.Go(func() {
			if _, err := s.Put(fmt.Sprintf("svc%d", i%4), member(i)); err != nil {
				errs <- err
			}
		})
	}
	waitStaged(t, s, stagedMembers(n))
	d.release <- nil
	if err := outcome(t, first); err != nil {
		t.Fatal(err)
	}
	d.enter(t)
	d.release <- nil
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := d.writes.Load(); got != 2 {
		t.Errorf("writes for %d registrations = %d, want 2", n, got)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	total := 0
	for _, ms := range snap.Members {
		total += len(ms)
	}
	if total != n || snap.Generation != 2 {
		t.Errorf("on disk: %d members, generation %d; want %d, 2", total, snap.Generation, n)
	}
	if got := s.Snapshot(); !reflect.DeepEqual(got, snap) {
		t.Errorf("in memory:\n%+v\non disk:\n%+v", got, snap)
	}
}

// TestFailedBatch: a write that fails fails every call in its batch and every call staged
// on top of it (a renewal of a lease that only that batch carried too), leaves memory as on
// disk, and the next write succeeds.
func TestFailedBatch(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("web", member(0)); err != nil {
		t.Fatal(err)
	}
	d := holdWrites(s)

	// Batch 1 (written): m1.
	first := run(put(s, "web", member(1)))
	d.enter(t)
	// Batch 2 (fails): m10..m29 and a lease of m30.
	var batch2 []<-chan error
	for i := 10; i < 30; i++ {
		batch2 = append(batch2, run(put(s, "web", member(i))))
	}
	t0 := time.Now()
	batch2 = append(batch2, run(func() error {
		_, _, err := s.PutLease("web", member(30), 10*time.Second, t0)
		return err
	}))
	waitStaged(t, s, stagedMembers(23))
	d.release <- nil
	if err := outcome(t, first); err != nil {
		t.Fatal(err)
	}
	d.enter(t)
	// Staged on top of batch 2: m40..m49, the removal of m0, a renewal of m30.
	var onTop []<-chan error
	for i := 40; i < 50; i++ {
		onTop = append(onTop, run(put(s, "other", member(i))))
	}
	onTop = append(onTop, run(func() error {
		_, err := s.Delete("web", "m0")
		return err
	}))
	waitStaged(t, s, func(v view) bool { _, ok := v.services["web"]["m0"]; return !ok && len(v.services["other"]) == 10 })
	renewedAt := t0.Add(time.Second)
	onTop = append(onTop, run(func() error {
		changed, _, err := s.PutLease("web", member(30), 10*time.Second, renewedAt)
		if changed {
			return errors.New("renewal reported a change")
		}
		return err
	}))
	waitStaged(t, s, func(v view) bool { return v.leases["web"]["m30"].Expires.Equal(renewedAt.Add(10 * time.Second)) })
	d.release <- errDiskFull

	for i, c := range batch2 {
		if err := outcome(t, c); !errors.Is(err, errDiskFull) || !errors.Is(err, ErrNotSaved) {
			t.Errorf("call %d of the failed batch: err = %v, want %v and %v", i, err, ErrNotSaved, errDiskFull)
		}
	}
	for i, c := range onTop {
		if err := outcome(t, c); !errors.Is(err, errDiskFull) || !errors.Is(err, ErrNotSaved) {
			t.Errorf("call %d staged on top of the failed batch: err = %v, want %v and %v", i, err, ErrNotSaved, errDiskFull)
		}
	}
	checkAsOnDisk(t, s, dir)
	if got := s.Snapshot(); got.Generation != 2 || len(got.Members["web"]) != 2 || len(got.Members["other"]) != 0 {
		t.Errorf("after the failure: %+v; want generation 2, web m0 and m1", got)
	}
	if _, ok := s.Lease("web", "m30"); ok {
		t.Error("lease of the failed batch visible")
	}

	// The store goes on: a retry is written.
	go func() {
		<-d.entered // the write of the Put below
		d.release <- nil
	}()
	if _, err := s.Put("web", member(10)); err != nil {
		t.Fatalf("Put after a failed write: %v", err)
	}
	checkAsOnDisk(t, s, dir)
	if got := s.Snapshot(); got.Generation != 3 || len(got.Members["web"]) != 3 {
		t.Errorf("after the retry: %+v; want generation 3, web m0, m1 and m10", got)
	}
}

// checkAsOnDisk fails unless s holds what its state file holds, staged state included.
func checkAsOnDisk(t *testing.T, s *Store, dir string) {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Snapshot(), r.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("in memory:\n%+v\non disk:\n%+v", got, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !reflect.DeepEqual(s.staged.services, s.durable.services) || !reflect.DeepEqual(s.staged.leases, s.durable.leases) {
		t.Errorf("staged state differs from the durable one:\n%+v\n%+v", s.staged, s.durable)
	}
	if s.writing || s.pending != nil || s.inflight != nil {
		t.Error("a write still in progress")
	}
}

// TestReadsSeeOnlyWrittenState: Get, Snapshot, Lease and Leases show a change only once its
// write is done; a renewal during writes is not written, returns at once and is kept by
// every version of the state.
func TestReadsSeeOnlyWrittenState(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := s.Put("web", member(1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutLease("web", member(2), 10*time.Second, t0); err != nil {
		t.Fatal(err)
	}
	gen := s.Snapshot().Generation
	d := holdWrites(s)

	del := run(func() error {
		_, err := s.Delete("web", "m1")
		return err
	})
	d.enter(t)
	adds := []<-chan error{
		run(put(s, "web", member(3))),
		run(func() error {
			_, _, err := s.PutLease("web", member(4), time.Minute, t0)
			return err
		}),
	}
	waitStaged(t, s, func(v view) bool { return len(v.services["web"]) == 3 })
	check := func(when string, gen uint64, want ...string) {
		t.Helper()
		snap := s.Snapshot()
		var got []string
		for _, m := range snap.Members["web"] {
			got = append(got, m.Name)
		}
		if snap.Generation != gen || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Snapshot = generation %d, %v; want %d, %v", when, snap.Generation, got, gen, want)
		}
		for _, name := range []string{"m1", "m2", "m3", "m4"} {
			if _, ok := s.Get("web", name); ok != slicesContains(want, name) {
				t.Errorf("%s: Get(%s) = %v, want %v", when, name, ok, !ok)
			}
		}
		_, leased := s.Lease("web", "m4")
		_, inLeases := s.Leases()["web"]["m4"]
		if want := slicesContains(want, "m4"); leased != want || inLeases != want {
			t.Errorf("%s: lease of m4 visible = %v, %v; want %v", when, leased, inLeases, want)
		}
	}
	check("during the first write", gen, "m1", "m2")

	// The renewal of a lease on disk returns while writes are held.
	if changed, _, err := s.PutLease("web", member(2), 10*time.Second, t0.Add(5*time.Second)); err != nil || changed {
		t.Fatalf("renewal = %v, %v; want false, nil", changed, err)
	}
	renewed := t0.Add(15 * time.Second)
	if l, _ := s.Lease("web", "m2"); !l.Expires.Equal(renewed) {
		t.Errorf("expiry after the renewal = %v, want %v", l.Expires, renewed)
	}

	d.release <- nil
	if err := outcome(t, del); err != nil {
		t.Fatal(err)
	}
	d.enter(t)
	check("during the second write", gen+1, "m2")
	if l, _ := s.Lease("web", "m2"); !l.Expires.Equal(renewed) {
		t.Errorf("expiry after the first write = %v, want %v (renewal lost)", l.Expires, renewed)
	}
	d.release <- nil
	for _, c := range adds {
		if err := outcome(t, c); err != nil {
			t.Fatal(err)
		}
	}
	check("after the writes", gen+2, "m2", "m3", "m4")
	if l, _ := s.Lease("web", "m2"); !l.Expires.Equal(renewed) {
		t.Errorf("expiry after the second write = %v, want %v (renewal lost)", l.Expires, renewed)
	}
	if got, err := s.Expire(t0.Add(14 * time.Second)); err == nil && len(got) != 0 {
		t.Errorf("Expire before the renewed expiry removed %+v", got)
	}
	checkAsOnDisk(t, s, dir)
}

func slicesContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestPutDeleteInterleavings: for each member, two goroutines register it and two others
// remove it, again and again. As if the calls ran one after the other, the registrations
// that changed something and the removals that found the member alternate, so they differ by
// whether the member is there at the end, in memory and on disk.
func TestPutDeleteInterleavings(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const members, rounds = 16, 30
	var puts, dels [members]atomic.Int64
	var wg sync.WaitGroup
	for i := range members {
		m := member(i)
		for range 2 {
			wg.Go(func() {
				for range rounds {
					changed, err := s.Put("web", m)
					if err != nil {
						t.Error(err)
						return
					}
					if changed {
						puts[i].Add(1)
					}
					runtime.Gosched()
				}
			})
			wg.Go(func() {
				for range rounds {
					got, err := s.Delete("web", m.Name)
					switch {
					case err == nil && got != m:
						t.Errorf("Delete(%s) = %+v, want %+v", m.Name, got, m)
					case err == nil:
						dels[i].Add(1)
					case !errors.Is(err, ErrNotFound):
						t.Error(err)
						return
					}
					runtime.Gosched()
				}
			})
		}
	}
	wg.Go(func() {
		for range rounds * 10 {
			s.Snapshot()
			s.Get("web", "m0")
			runtime.Gosched()
		}
	})
	wg.Wait()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range members {
		name := member(i).Name
		_, inMemory := s.Get("web", name)
		_, onDisk := r.Get("web", name)
		want := 0
		if inMemory {
			want = 1
		}
		if p, d := puts[i].Load(), dels[i].Load(); p-d != int64(want) || onDisk != inMemory {
			t.Errorf("%s: %d registrations changed it, %d removals found it; present in memory %v, on disk %v",
				name, p, d, inMemory, onDisk)
		}
	}
	checkAsOnDisk(t, s, dir)
}

package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"clb/internal/etcdstore"
	"clb/internal/etcdtest"
	"clb/internal/model"
	"clb/internal/store"
)

// open runs a store on endpoints until the test ends and waits for its first read.
func open(t *testing.T, endpoints []string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Prefix: "/clb/", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	waitFor(t, 10*time.Second, "first read", func() bool { return s.Ready() == nil })
	return s
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func member(name string, port int) model.Member {
	return model.Member{Name: name, Address: "127.0.0.1", Port: port, Weight: 100}
}

// TestTwoNodes: a write through one store is in the other's copy through the watch; equal
// writes change nothing; a delete is seen by both; a lease expires in etcd.
func TestTwoNodes(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a, b := open(t, c.Endpoints()), open(t, c.Endpoints())

	changed, err := a.Put("web", member("m1", 8080))
	if err != nil || !changed {
		t.Fatalf("Put = %v, %v; want true, nil", changed, err)
	}
	// A's own copy holds the write when Put returns (it waited for its watch).
	if _, ok := a.Get("web", "m1"); !ok {
		t.Fatal("A's copy lacks m1 right after Put")
	}
	waitFor(t, 5*time.Second, "B to see m1", func() bool { _, ok := b.Get("web", "m1"); return ok })
	rev := b.Snapshot().Generation
	if changed, err := b.Put("web", member("m1", 8080)); err != nil || changed {
		t.Errorf("identical Put through B = %v, %v; want false, nil", changed, err)
	}
	if got := b.Snapshot().Generation; got != rev {
		t.Errorf("identical Put moved the revision %d → %d", rev, got)
	}
	got, err := b.Delete("web", "m1")
	if err != nil || got.Name != "m1" {
		t.Fatalf("Delete = %v, %v", got, err)
	}
	waitFor(t, 5*time.Second, "A to see m1 gone", func() bool { _, ok := a.Get("web", "m1"); return !ok })
	if _, err := a.Delete("web", "m1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}

	// A lease of 2s, renewed twice without a write, then left to expire: etcd removes it, and
	// both copies follow.
	if changed, _, err := a.PutLease("web", member("l1", 9000), 2*time.Second, time.Now()); err != nil || !changed {
		t.Fatalf("PutLease = %v, %v", changed, err)
	}
	for range 2 {
		time.Sleep(time.Second)
		rev := a.Snapshot().Generation
		if changed, _, err := b.PutLease("web", member("l1", 9000), 2*time.Second, time.Now()); err != nil || changed {
			t.Fatalf("renewal = %v, %v; want false, nil", changed, err)
		}
		if got := a.Snapshot().Generation; got != rev {
			t.Errorf("a renewal wrote to etcd (revision %d → %d)", rev, got)
		}
	}
	if _, ok := a.Get("web", "l1"); !ok {
		t.Fatal("renewed lease expired")
	}
	waitFor(t, 10*time.Second, "the lease to expire on both nodes", func() bool {
		_, okA := a.Get("web", "l1")
		_, okB := b.Get("web", "l1")
		return !okA && !okB
	})
}

// TestConcurrentWriters: many writers on two nodes, some on the same members, lose nothing.
func TestConcurrentWriters(t *testing.T) {
	c := etcdtest.Start(t, 1)
	nodes := []*etcdstore.Store{open(t, c.Endpoints()), open(t, c.Endpoints())}
	var wg sync.WaitGroup
	const n = 100
	for i := range n {
		for j, s := range nodes {
			wg.Go(func() {
				// Both nodes write member i; its weight says which node won, and either is fine.
				m := member(fmt.Sprintf("c%03d", i), 1000+i)
				m.Weight = 1 + j
				if _, err := s.Put("bulk", m); err != nil {
					t.Errorf("Put %s: %v", m.Name, err)
				}
			})
		}
	}
	wg.Wait()
	for _, s := range nodes {
		waitFor(t, 10*time.Second, "every member on every node", func() bool { return len(s.Snapshot().Members["bulk"]) == n })
	}
	// Updates guarded by revision: 50 increments of one member's weight from two nodes.
	if _, err := nodes[0].Put("ctr", member("x", 1)); err != nil {
		t.Fatal(err)
	}
	cli := c.Client()
	var mu sync.Mutex
	seen := map[int]bool{}
	for i := range 50 {
		wg.Go(func() {
			m := member("x", 2+i)
			if _, err := nodes[i%2].Put("ctr", m); err != nil {
				t.Errorf("Put: %v", err)
			}
			mu.Lock()
			seen[2+i] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	resp, err := cli.Get(context.Background(), "/clb/members/ctr/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("members of ctr in etcd: %v %v", resp, err)
	}
}

// TestOutageAndCompaction: a store whose etcd member is stopped reports it, fails writes
// fast, keeps its copy; meanwhile the others write and compact; when its member is back it
// reads everything afresh (its watch revision is gone).
func TestOutageAndCompaction(t *testing.T) {
	c := etcdtest.Start(t, 3)
	lonely := open(t, []string{c.Members[0].ClientURL})
	other := open(t, []string{c.Members[1].ClientURL, c.Members[2].ClientURL})
	if _, err := other.Put("web", member("keep", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put("web", member("gone", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "lonely to see both", func() bool { return len(lonely.Snapshot().Members["web"]) == 2 })

	c.Members[0].Stop()
	waitFor(t, 10*time.Second, "lonely to report etcd unavailable", func() bool { return !lonely.Status().Available })
	start := time.Now()
	if _, err := lonely.Put("web", member("x", 3)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Put while unavailable = %v, want ErrUnavailable", err)
	}
	// A failure that waited for etcd would take 2 × Timeout (4 s); 1 s leaves room for a busy
	// machine and still tells the two apart.
	if d := time.Since(start); d > time.Second {
		t.Errorf("Put while unavailable took %s, want a fast failure", d)
	}
	if got := len(lonely.Snapshot().Members["web"]); got != 2 {
		t.Errorf("copy during the outage has %d members, want the 2 it had", got)
	}

	if _, err := other.Delete("web", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put("web", member("new", 4)); err != nil {
		t.Fatal(err)
	}
	cli := c.Client()
	resp, err := cli.Get(context.Background(), "/clb/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	resyncs := lonely.Status().Resyncs
	c.Members[0].Start()
	waitFor(t, 20*time.Second, "lonely to catch up after its member is back", func() bool {
		_, keep := lonely.Get("web", "keep")
		_, gone := lonely.Get("web", "gone")
		_, nw := lonely.Get("web", "new")
		return keep && !gone && nw && lonely.Status().Available
	})
	if got := lonely.Status().Resyncs; got <= resyncs {
		t.Errorf("resyncs %d → %d: want a fresh read after the outage", resyncs, got)
	}
	if _, err := lonely.Put("web", member("x", 3)); err != nil {
		t.Errorf("Put after the outage: %v", err)
	}
}

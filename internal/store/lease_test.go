package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLeaseRenewExpire(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if changed, exp, err := s.PutLease("web", member(1), 10*time.Second, t0); err != nil || !changed || !exp.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("PutLease = %v, %v, %v; want true, t0+10s, nil", changed, exp, err)
	}
	if _, err := s.Put("web", member(2)); err != nil {
		t.Fatal(err)
	}
	gen := s.Snapshot().Generation
	state := readState(t, dir)

	// A renewal moves the expiry in memory only: no write, no new generation.
	if changed, _, err := s.PutLease("web", member(1), 10*time.Second, t0.Add(5*time.Second)); err != nil || changed {
		t.Fatalf("renewal = %v, %v; want false, nil", changed, err)
	}
	if got := s.Snapshot().Generation; got != gen {
		t.Errorf("generation after renewal = %d, want %d", got, gen)
	}
	if got := readState(t, dir); got != state {
		t.Errorf("state file rewritten by a renewal")
	}

	if got, err := s.Expire(t0.Add(14 * time.Second)); err != nil || len(got) != 0 {
		t.Fatalf("Expire before the renewed expiry = %v, %v; want none", got, err)
	}
	got, err := s.Expire(t0.Add(15 * time.Second))
	if err != nil || len(got) != 1 || got[0].Service != "web" || got[0].Member != member(1) || got[0].Lease.TTL != 10*time.Second {
		t.Fatalf("Expire at the renewed expiry = %+v, %v; want m1 of web", got, err)
	}
	if _, ok := s.Get("web", "m1"); ok {
		t.Error("expired member still stored")
	}
	if _, ok := s.Get("web", "m2"); !ok {
		t.Error("permanent member m2 removed by Expire")
	}
	if got, err := s.Expire(t0.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Errorf("Expire of a permanent member = %v, %v; want none", got, err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Get("web", "m1"); ok {
		t.Error("expired member back after reopen")
	}
}

func TestLeaseBecomesPermanent(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, _, err := s.PutLease("web", member(1), time.Second, now); err != nil {
		t.Fatal(err)
	}
	// The same member registered without a TTL: the latest registration wins.
	if changed, err := s.Put("web", member(1)); err != nil || !changed {
		t.Fatalf("Put over a lease = %v, %v; want true (lease dropped), nil", changed, err)
	}
	if _, ok := s.Lease("web", "m1"); ok {
		t.Error("lease kept after a permanent registration")
	}
	if got, _ := s.Expire(now.Add(time.Hour)); len(got) != 0 {
		t.Errorf("Expire removed a member registered permanently: %+v", got)
	}
	// A changed TTL is stored.
	if changed, _, err := s.PutLease("web", member(1), 2*time.Second, now); err != nil || !changed {
		t.Fatalf("PutLease after Put = %v, %v; want true", changed, err)
	}
	if changed, _, err := s.PutLease("web", member(1), 3*time.Second, now); err != nil || !changed {
		t.Fatalf("PutLease with a new TTL = %v, %v; want true", changed, err)
	}
	if _, err := s.Delete("web", "m1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lease("web", "m1"); ok {
		t.Error("lease kept after Delete")
	}
	if _, _, err := s.PutLease("web", member(1), 0, now); err == nil {
		t.Error("PutLease with TTL 0 succeeded")
	}
}

// TestLeaseGraceAfterRestart: the TTL survives a restart; the expiry starts again from the
// restart, so members that renew in time stay, and dead ones go one TTL later.
func TestLeaseGraceAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	longAgo := time.Now().Add(-time.Hour)
	if _, _, err := s.PutLease("web", member(1), 30*time.Second, longAgo); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readState(t, dir), `"m1": "30s"`) {
		t.Errorf("state file does not record the TTL:\n%s", readState(t, dir))
	}
	before := time.Now()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := r.Lease("web", "m1")
	if !ok || l.TTL != 30*time.Second || l.Expires.Before(before.Add(30*time.Second)) || l.Expires.After(time.Now().Add(30*time.Second)) {
		t.Fatalf("lease after reopen = %+v, %v; want TTL 30s expiring 30s after the reopen", l, ok)
	}
	if got, _ := r.Expire(time.Now()); len(got) != 0 {
		t.Errorf("a restart expired %+v at once", got)
	}
	if got, _ := r.Expire(time.Now().Add(31 * time.Second)); len(got) != 1 {
		t.Errorf("a dead member outlived its grace: Expire = %+v", got)
	}
}

func TestLeaseCorruptState(t *testing.T) {
	for name, leases := range map[string]string{
		"bad ttl":        `{"m1": "soon"}`,
		"zero ttl":       `{"m1": "0s"}`,
		"unknown member": `{"nobody": "30s"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			state := `{"version": 1, "generation": 1, "services": {"web": {"members": [
				{"name": "m1", "address": "127.0.0.1", "port": 10001, "weight": 100}], "leases": ` + leases + `}}}`
			if err := os.WriteFile(filepath.Join(dir, FileName), []byte(state), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "lease") {
				t.Errorf("Open = %v, want an error about the lease", err)
			}
		})
	}
}

func readState(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

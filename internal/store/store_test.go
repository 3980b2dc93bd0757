package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"clb/internal/model"
)

func member(i int) model.Member {
	return model.Member{Name: fmt.Sprintf("m%d", i), Address: "127.0.0.1", Port: 10000 + i, Weight: 100}
}

func TestPutDeleteSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if changed, err := s.Put("web", member(i)); err != nil || !changed {
			t.Fatalf("Put(m%d) = %v, %v; want true, nil", i, changed, err)
		}
	}
	if changed, err := s.Put("web", member(1)); err != nil || changed {
		t.Errorf("identical Put = %v, %v; want false, nil", changed, err)
	}
	if _, err := s.Delete("web", "m0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete("web", "m0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete err = %v, want ErrNotFound", err)
	}
	gen := s.Snapshot().Generation

	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	if snap.Generation != gen {
		t.Errorf("generation after reopen = %d, want %d", snap.Generation, gen)
	}
	got := snap.Members["web"]
	if len(got) != 2 || got[0] != member(1) || got[1] != member(2) {
		t.Errorf("members after reopen = %+v, want m1, m2", got)
	}
}

func TestPutRejectsInvalidMember(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bad := member(1)
	bad.Address = "127.0.0.1\n    server evil 1.2.3.4:80"
	if _, err := s.Put("web", bad); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("Put(injection) err = %v, want ErrInvalid", err)
	}
	if n := len(s.Snapshot().Members); n != 0 {
		t.Errorf("state has %d services after a refused Put, want 0", n)
	}
}

func TestConcurrentPutsLoseNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if _, err := s.Put(fmt.Sprintf("svc%d", i%4), member(i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, ms := range r.Snapshot().Members {
		total += len(ms)
	}
	if total != n {
		t.Errorf("members on disk = %d, want %d", total, n)
	}
}

func TestFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("web", member(1)); err != nil {
		t.Fatal(err)
	}
	// Make the state directory unusable for the temp file: replace it by a file.
	s.path = filepath.Join(dir, "state.json", "nested")
	if _, err := s.Put("web", member(2)); !errors.Is(err, ErrNotSaved) {
		t.Fatalf("Put with an unwritable state = %v, want %v", err, ErrNotSaved)
	}
	if _, ok := s.Get("web", "m2"); ok {
		t.Error("member visible in memory although it was not saved")
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("Open(corrupt) succeeded, want error")
	}
}

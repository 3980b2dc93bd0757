package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"clb/internal/auth"
)

// TestKeysCommandConcurrent: clbd keys processes run at the same time lose no key: they take
// turns on a lock of the keys file's directory.
func TestKeysCommandConcurrent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.yaml")
	const n = 12
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i], _ = run(t, "clbd", "keys", "add", "--keys-file", file, "--scope", "admin", fmt.Sprintf("k%02d", i))
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("clbd keys add k%02d: exit %d", i, c)
		}
	}
	kf, err := auth.LoadKeysFile(file, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(kf.Keys); got != n {
		t.Errorf("keys file holds %d keys after %d concurrent adds, want %d", got, n, n)
	}
}

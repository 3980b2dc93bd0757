package register

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCPUMeter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &cpuMeter{path: path}
	write("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
	if _, ok := m.percent(); ok {
		t.Fatal("first reading gave a value; want none (it only sets the start)")
	}
	// +300 busy (user 200, system 100), +100 idle, +0 iowait: 75%.
	write("cpu  300 0 200 800 100 0 0 0 0 0\n")
	if got, ok := m.percent(); !ok || got != 75 {
		t.Errorf("percent = %v %v, want 75 true", got, ok)
	}
	// No time passed: no value.
	if _, ok := m.percent(); ok {
		t.Error("a reading with no time passed gave a value")
	}
	write("garbage\n")
	if _, ok := m.percent(); ok {
		t.Error("garbage gave a value")
	}
	if _, _, ok := readCPU("/proc/stat"); !ok {
		t.Skip("no /proc/stat here")
	}
}

package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"clb/internal/atomicfile"
	"clb/internal/model"
)

// BenchmarkPutParallel measures registrations from about 50 concurrent callers into a service
// of 1,000 members, each call returning once its change is on disk: the shape of a
// registration burst (agent's BenchmarkRegistrationBurst) without HTTP and haproxy. writes/op
// is the share of a state file write per registration: 1 without group commit.
func BenchmarkPutParallel(b *testing.B) {
	dir := b.TempDir()
	f := file{Version: formatVersion, Generation: 1, Services: map[string]serviceRecord{}}
	var ms []model.Member
	for i := range 1000 {
		ms = append(ms, model.Member{Name: fmt.Sprintf("m%04d", i), Address: fmt.Sprintf("127.0.%d.%d", 100+i/250, 1+i%250), Port: 9, Weight: model.DefaultWeight})
	}
	f.Services["burst"] = serviceRecord{Members: ms}
	data, err := json.Marshal(f)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o640); err != nil {
		b.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	var writes atomic.Int64
	s.write = func(path string, data []byte, perm os.FileMode) error {
		writes.Add(1)
		return atomicfile.Write(path, data, perm)
	}
	var next atomic.Int64
	b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			m := model.Member{Name: fmt.Sprintf("n%06d", i), Address: "127.0.99.1", Port: 9, Weight: model.DefaultWeight}
			if _, err := s.Put("burst", m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
}

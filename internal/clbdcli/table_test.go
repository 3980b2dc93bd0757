package clbdcli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/agent"
	"clb/agent/api"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/status")

// fixture is a testdata/status/*.json: the API's answers and the time they are shown at.
type fixture struct {
	Now      time.Time         `json:"now"`
	Status   agent.Status      `json:"status"`
	Services []api.ServiceView `json:"services"`
}

// loadFixture decodes a fixture strictly: a field the API types do not have fails the test, so
// the fixtures cannot drift from what GET /v1/status and /v1/services answer.
func loadFixture(t *testing.T, path string) fixture {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f fixture
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// checkGolden compares got with the golden file, or rewrites it under -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/clbdcli -run TestTablesGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestTablesGolden renders clbd status and clbd members from the fixtures (zones disabled,
// leases running, lapsed and kept by etcd, draining and down members, a failed apply, an
// unavailable etcd, no apply yet) and compares them with testdata/status/*.golden.
func TestTablesGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/status/*.json")
	if err != nil || len(cases) < 3 {
		t.Fatalf("fixtures: %v, %v", cases, err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(path, ".json")
		t.Run(filepath.Base(name), func(t *testing.T) {
			f := loadFixture(t, path)
			var status bytes.Buffer
			if err := renderStatus(&status, f.Status, f.Services, f.Now); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name+".status.golden", status.Bytes())
			var members bytes.Buffer
			for i, s := range f.Services {
				if i > 0 {
					members.WriteString("\n")
				}
				members.WriteString("$ clbd members " + s.Name + "\n")
				if err := renderMembers(&members, s, f.Now); err != nil {
					t.Fatal(err)
				}
			}
			checkGolden(t, name+".members.golden", members.Bytes())
		})
	}
}

// TestTablesShowWhatMatters checks, independently of the golden files, that the rows an
// operator looks for are there: a disabled zone, a down member, the draining ones, a lease
// expiring, the failed apply and its error on one line, etcd unavailable.
func TestTablesShowWhatMatters(t *testing.T) {
	f := loadFixture(t, "testdata/status/degraded.json")
	var b bytes.Buffer
	if err := renderStatus(&b, f.Status, f.Services, f.Now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"ERROR via reload, 2m0s ago (2026-12-02T09:58:00Z)",
		"cannot bind socket / [ALERT]",
		"etcd: UNAVAILABLE since 45s ago: context deadline exceeded",
		"pending changes    2 (saved",
		"b (disabled), c (disabled)",
		"draining (left, haproxy finishes their connections): web-old, 10.0.9.9:8080",
		"30s, lapsed 2s ago",
		"reload-only        legacy_80: dynamic servers and cookie stickiness",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("clbd status lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "web-a1") && !strings.Contains(line, "down") {
			t.Errorf("member row of web-a1 does not say down: %q", line)
		}
		if strings.HasPrefix(strings.TrimSpace(line), "web-b1") && !strings.Contains(line, "b (disabled)") {
			t.Errorf("member row of web-b1 does not say its zone is disabled: %q", line)
		}
	}
	h := loadFixture(t, "testdata/status/healthy.json")
	b.Reset()
	if err := renderStatus(&b, h.Status, h.Services, h.Now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"30s, expires in 12s", "(2 older: clbd status --json)", "haproxy pid 4242", "[fd00::13]:8080"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("clbd status (healthy) lacks %q:\n%s", want, b.String())
		}
	}
}

func TestShortDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Millisecond, "850ms"},
		{12*time.Second + 400*time.Millisecond, "12s"},
		{4*time.Minute + 10*time.Second, "4m10s"},
		{3*time.Hour + 4*time.Minute + 20*time.Second, "3h4m"},
		{50 * time.Hour, "2d2h"},
	} {
		if got := shortDuration(tt.d); got != tt.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

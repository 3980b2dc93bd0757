package stats

import (
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 1, 2, 3, 456_000_000, time.UTC)

// at is the i-th sample time, 2 s apart.
func at(i int) time.Time { return t0.Add(time.Duration(i) * 2 * time.Second) }

// web is one sample of service web: backend web_80 holding member m1 in slot s1 and a free
// slot s2, with the given request counts (s2 counts too: its counters are followed).
func web(i int, epoch uint64, s1, s2, backend uint64) Input {
	return Input{Time: at(i), Epoch: epoch, Services: map[string]ServiceInput{"web": {
		Backends: []Source{{Key: "web_80/BACKEND", Reading: Reading{Requests: backend, Sessions: 4}}},
		Servers: []Source{
			{Key: "web_80/s1", Member: "m1", Reading: Reading{Requests: s1, Up: true, Sessions: 3, RespMS: 7}},
			{Key: "web_80/s2", Reading: Reading{Requests: s2}},
		},
	}}}
}

func requests(t *testing.T, h *History, member string) []uint64 {
	t.Helper()
	var out []uint64
	for _, s := range h.Snapshot(time.Time{})["web"].Members[member].Samples {
		out = append(out, s.Requests)
	}
	return out
}

func TestRatesAndResets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []Input
		want  []uint64  // m1's cumulative requests, sample by sample
		rates []float64 // m1's req_rate, sample by sample
	}{
		{name: "counts since haproxy started, then increases",
			in:   []Input{web(0, 0, 100, 0, 100), web(1, 0, 120, 0, 120), web(2, 0, 121, 0, 121)},
			want: []uint64{100, 120, 121}, rates: []float64{0, 10, 0.5}},
		{name: "a reload (new epoch) starts haproxy's counters at zero: absorbed",
			in:   []Input{web(0, 0, 100, 0, 100), web(1, 1, 150, 0, 150), web(2, 1, 160, 0, 160)},
			want: []uint64{100, 250, 260}, rates: []float64{0, 75, 5}},
		{name: "a counter found lower (haproxy restarted) is a reset too",
			in:   []Input{web(0, 0, 100, 0, 100), web(1, 0, 4, 0, 4), web(2, 0, 10, 0, 10)},
			want: []uint64{100, 104, 110}, rates: []float64{0, 2, 3}},
		{name: "no traffic: rate 0, count stays",
			in:   []Input{web(0, 0, 5, 0, 5), web(1, 0, 5, 0, 5)},
			want: []uint64{5, 5}, rates: []float64{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(2*time.Second, 10*time.Minute)
			for _, in := range tc.in {
				h.Add(in)
			}
			if got := requests(t, h, "m1"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("requests = %v, want %v", got, tc.want)
			}
			var rates []float64
			for _, s := range h.Snapshot(time.Time{})["web"].Members["m1"].Samples {
				rates = append(rates, s.ReqRate)
			}
			if !reflect.DeepEqual(rates, tc.rates) {
				t.Errorf("req_rate = %v, want %v", rates, tc.rates)
			}
		})
	}
}

// A member that takes a slot gets only what the slot served since the last sample, not what
// it served for the member before (or while free).
func TestSlotHandover(t *testing.T) {
	h := New(2*time.Second, 10*time.Minute)
	h.Add(web(0, 0, 10, 500, 510))
	in := web(1, 0, 10, 530, 540)
	svc := in.Services["web"]
	svc.Servers[1].Member = "m2" // m2 takes s2, which had served 500 requests for someone else
	in.Services["web"] = svc
	h.Add(in)
	if got := requests(t, h, "m2"); !reflect.DeepEqual(got, []uint64{30}) {
		t.Errorf("m2's requests = %v, want [30] (s2's increase since the last sample)", got)
	}
	snap := h.Snapshot(time.Time{})["web"]
	if snap.Counters.Members != 2 || snap.Counters.MembersUp != 1 {
		t.Errorf("service members %d up %d, want 2 and 1", snap.Counters.Members, snap.Counters.MembersUp)
	}
}

func TestPrunedAndBounded(t *testing.T) {
	h := New(2*time.Second, 20*time.Second) // 10 samples per member
	for i := range 25 {
		h.Add(web(i, 0, uint64(i), 0, uint64(i)))
	}
	got := requests(t, h, "m1")
	if len(got) != 10 || got[0] != 15 || got[9] != 24 {
		t.Errorf("after 25 samples with a ring of 10: %v, want 15..24 oldest first", got)
	}
	since := h.Snapshot(at(21))["web"].Members["m1"].Samples
	if len(since) != 3 || !since[0].T.Equal(at(22)) {
		t.Errorf("since sample 21: %v, want samples 22, 23, 24", since)
	}
	// m1 leaves: its history goes at the next sample; the service stays.
	in := web(25, 0, 25, 0, 25)
	svc := in.Services["web"]
	svc.Servers = svc.Servers[1:]
	in.Services["web"] = svc
	h.Add(in)
	snap := h.Snapshot(time.Time{})
	if _, ok := snap["web"].Members["m1"]; ok || snap["web"].Totals == nil {
		t.Errorf("after m1 left: members %v, totals %v; want no m1 and the service's totals", snap["web"].Members, snap["web"].Totals)
	}
	// The service goes: its history too, and the rows it had.
	h.Add(Input{Time: at(26)})
	if snap := h.Snapshot(time.Time{}); len(snap) != 0 || len(h.raw) != 0 {
		t.Errorf("after the service left: %v, raw rows %d; want nothing", snap, len(h.raw))
	}
}

// A member in two backends (two listeners): counters and gauges summed, response time
// weighted by requests, errors per second from 5xx, connection and response errors; the
// service's totals come from its backends' own rows.
func TestMemberInTwoBackends(t *testing.T) {
	h := New(2*time.Second, 10*time.Minute)
	mk := func(i int, a, b Reading) Input {
		return Input{Time: at(i), Services: map[string]ServiceInput{"web": {
			Backends: []Source{{Key: "web_80/BACKEND", Reading: Reading{Requests: a.Requests + 2, Responses: [6]uint64{4: a.Responses[4] + 2}}},
				{Key: "web_81/BACKEND", Reading: Reading{Requests: b.Requests}}},
			Servers: []Source{{Key: "web_80/s1", Member: "m1", Reading: a}, {Key: "web_81/s1", Member: "m1", Reading: b}},
		}}}
	}
	h.Add(mk(0, Reading{Requests: 30, RespMS: 10, Sessions: 1}, Reading{Requests: 10, RespMS: 50, Sessions: 2, Queue: 1}))
	h.Add(mk(1, Reading{Requests: 40, Responses: [6]uint64{4: 2}, ConnectErrors: 1, RespMS: 10, Sessions: 1, Up: true},
		Reading{Requests: 10, ResponseErrors: 1, RespMS: 50, Sessions: 2, Queue: 1}))
	m := h.Snapshot(time.Time{})["web"].Members["m1"]
	last := m.Samples[len(m.Samples)-1]
	want := Sample{T: at(1), ReqRate: 5, RespMS: 18, Sessions: 3, Queue: 1, ErrRate: 2, Requests: 50}
	if last != want {
		t.Errorf("m1's last sample = %+v, want %+v", last, want)
	}
	if !m.Counters.Up || m.Counters.Responses[4] != 2 || m.Counters.ConnectErrors != 1 || m.Counters.ResponseErrors != 1 {
		t.Errorf("m1's counters = %+v", m.Counters)
	}
	tot := h.Snapshot(time.Time{})["web"].Totals
	if tot == nil || tot.Requests != 52 || tot.ErrRate != 1 || tot.ReqRate != 5 {
		t.Errorf("web's totals = %+v, want 52 requests, 5/s, 1 error/s (the 503s haproxy answered itself)", tot)
	}
}

// TestRingBudget: rings grow with their samples, and many members get shorter rings so the
// history stays within MaxPoints.
func TestRingBudget(t *testing.T) {
	h := New(2*time.Second, 10*time.Minute)
	if got := h.capacity(10); got != 300 {
		t.Errorf("capacity with 10 members = %d, want 300", got)
	}
	if got := h.capacity(10_000); got != 150 {
		t.Errorf("capacity with 10,000 members = %d, want 150", got)
	}
	if got := h.capacity(1_000_000); got != MinPoints {
		t.Errorf("capacity with 1,000,000 members = %d, want %d", got, MinPoints)
	}
	s := &series{size: 3}
	for i := range 5 {
		s.push(point{t: int64(i + 1)})
		if want := min(i+1, 3); len(s.ring) != want || s.n != want {
			t.Fatalf("after %d pushes: len %d, n %d, want %d", i+1, len(s.ring), s.n, want)
		}
	}
	got := s.samples(time.Time{}, time.Unix(0, 0))
	if len(got) != 3 || got[0].T.UnixNano() != 3 || got[2].T.UnixNano() != 5 {
		t.Errorf("samples = %v, want the last 3 (3, 4, 5) oldest first", got)
	}
}

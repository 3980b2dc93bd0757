// Package stats keeps the recent history of haproxy's traffic counters by service and member:
// what GET /v1/stats answers and clbd's per-member Prometheus metrics read.
//
// haproxy counts per server slot (s1..sN) and starts every counter again at zero when a new
// worker starts (a reload). The reconciler samples `show stat` at every health poll and hands
// each sample over already mapped to members (Add); this package turns it into counters that
// only grow (a counter found lower than before, or a new Epoch, is a restart: its new value
// counts as the increase), rates from the increase between two samples, and a bounded ring of
// samples per member (Window / Interval samples; members and services that are gone are
// dropped at the next sample).
//
// A slot's increase goes to the member holding it at the sample: when a member takes a slot
// another one left, the requests the slot served between the last sample and the handover
// (at most one poll interval, and a slot is only handed over after its drain) are counted
// for the new holder. That is the price of sampling; it is small next to the 2 s interval.
package stats

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Reading is one haproxy row (a server or a backend's own row) at one sample: counters since
// the worker started, gauges as they are.
type Reading struct {
	// Requests: HTTP requests (req_tot), or sessions for TCP (stot).
	Requests uint64
	// Responses by class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
	Responses [6]uint64
	// ConnectErrors (econ), ResponseErrors (eresp), Retries (wretr), Redispatches (wredis),
	// CheckFailures (chkfail), BytesIn and BytesOut.
	ConnectErrors, ResponseErrors, Retries, Redispatches, CheckFailures, BytesIn, BytesOut uint64
	// Sessions (scur) and Queue (qcur) now; RespMS haproxy's average response time over its
	// last 1024 requests (rtime).
	Sessions, Queue int64
	RespMS          float64
	// Up: health checks let it take traffic (meaningless for a backend's own row).
	Up bool
}

// ResponseClasses names Reading.Responses' classes, in order.
var ResponseClasses = [6]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// Source is one haproxy row and who it belongs to.
type Source struct {
	// Key is the row's identity in haproxy, "backend/server": the same key in two samples is
	// the same counters.
	Key string
	// Member holds the server ("" for a free slot: its counters are followed, not counted).
	Member string
	Reading
}

// ServiceInput is one service at one sample: its backends' own rows (the totals, which also
// count what haproxy answered itself, like a 503 without a member) and its servers.
type ServiceInput struct {
	Backends []Source
	Servers  []Source
}

// Input is one sample of haproxy.
type Input struct {
	Time time.Time
	// Epoch changes whenever haproxy's counters restart: the reconciler gives the pid of the
	// worker that answered (a reload or a restart starts a new one).
	Epoch    uint64
	Services map[string]ServiceInput
}

// Counters are a member's or a service's counters as clbd keeps them: they only grow (resets
// at reloads absorbed), from the first sample clbd took of them, which counts what haproxy
// had counted until then.
type Counters struct {
	Requests                                                                               uint64
	Responses                                                                              [6]uint64
	ConnectErrors, ResponseErrors, Retries, Redispatches, CheckFailures, BytesIn, BytesOut uint64
	// Sessions, Queue and RespMS are the latest sample's; a member in several backends (one
	// per listener) sums sessions and queue and averages RespMS weighted by requests.
	Sessions, Queue int64
	RespMS          float64
	// Up: the member's server passes its health checks in at least one backend. For a
	// service: how many members do (MembersUp) out of Members.
	Up                 bool
	MembersUp, Members int
}

// Sample is one point of a member's history, as GET /v1/stats shows it.
type Sample struct {
	T time.Time `json:"t"`
	// ReqRate is requests (TCP: sessions) per second since the previous sample; ErrRate the
	// same for 5xx responses, connection errors and response errors.
	ReqRate float64 `json:"req_rate"`
	RespMS  float64 `json:"resp_ms"`
	// Sessions and Queue are haproxy's scur and qcur.
	Sessions int64   `json:"sessions"`
	Queue    int64   `json:"queue"`
	ErrRate  float64 `json:"err_rate"`
	// Requests is the cumulative count (Counters.Requests).
	Requests uint64 `json:"requests"`
}

// point is a Sample as the ring stores it (40 bytes instead of 72).
type point struct {
	t                        int64
	reqRate, respMS, errRate float32
	sessions, queue          int32
	requests                 uint64
}

func (p point) sample() Sample {
	return Sample{T: time.Unix(0, p.t).UTC(), ReqRate: float64(p.reqRate), RespMS: float64(p.respMS), ErrRate: float64(p.errRate),
		Sessions: int64(p.sessions), Queue: int64(p.queue), Requests: p.requests}
}

// series is one member's or service's counters and (members only) recent samples.
type series struct {
	c    Counters
	last time.Time // time of the previous sample; zero before the first
	// latest is the last sample taken.
	latest point
	// ring holds the last samples, up to size (it grows to it: a young member costs only
	// the samples it has); next is where the next one goes, n how many it holds.
	ring          []point
	size, next, n int
}

func (s *series) push(p point) {
	if s.size == 0 {
		return
	}
	if len(s.ring) < s.size {
		s.ring = append(s.ring, p)
		s.n = len(s.ring)
		s.next = s.n % s.size
		return
	}
	s.ring[s.next] = p
	s.next = (s.next + 1) % s.size
	s.n = s.size
}

// samples returns the samples after since (zero: all) and not older than cutoff, oldest first.
func (s *series) samples(since, cutoff time.Time) []Sample {
	out := make([]Sample, 0, s.n)
	for i := range s.n {
		p := s.ring[(s.next-s.n+i+len(s.ring))%len(s.ring)]
		if p.t <= cutoff.UnixNano() || (!since.IsZero() && p.t <= since.UnixNano()) {
			continue
		}
		out = append(out, p.sample())
	}
	return out
}

type serviceSeries struct {
	totals  series
	members map[string]*series
}

// History is the recent history; safe for concurrent use (one writer, Add; any readers).
type History struct {
	interval, window time.Duration

	mu    sync.Mutex
	epoch uint64
	// raw is every row's last reading, by Source.Key: the base of the next increase.
	raw      map[string]Reading
	services map[string]*serviceSeries
	latest   time.Time
}

// New returns an empty history sampled every interval, keeping window of it.
func New(interval, window time.Duration) *History {
	return &History{interval: interval, window: window, raw: map[string]Reading{}, services: map[string]*serviceSeries{}}
}

// Interval is how often haproxy is sampled; Window how much history is kept.
func (h *History) Interval() time.Duration { return h.interval }

// Window is how much history is kept.
func (h *History) Window() time.Duration { return h.window }

// MaxPoints bounds the samples kept for all members together (40 bytes each: 1.5 M points,
// 60 MB). With more members than MaxPoints/(window/interval), a new member's ring is made
// shorter (never under MinPoints): 10,000 members keep 150 samples each (5 minutes at 2 s).
const (
	MaxPoints = 1_500_000
	MinPoints = 30
)

// capacity is the number of samples a new member's ring holds when the history has members.
func (h *History) capacity(members int) int {
	if h.interval <= 0 {
		return 1
	}
	n := max(1, int(h.window/h.interval))
	if members > 0 && n*members > MaxPoints {
		n = max(min(n, MinPoints), MaxPoints/members)
	}
	return n
}

// increase is how much a counter grew from prev to cur: all of cur after a restart (reset, or
// a counter found lower).
func increase(prev, cur uint64, reset bool) uint64 {
	if reset || cur < prev {
		return cur
	}
	return cur - prev
}

// delta is the increase of every counter of a row since the last sample; a row not seen
// before counts all it has.
func delta(prev Reading, seen bool, cur Reading, reset bool) Reading {
	reset = reset || !seen
	d := cur // gauges as they are
	d.Requests = increase(prev.Requests, cur.Requests, reset)
	for i := range cur.Responses {
		d.Responses[i] = increase(prev.Responses[i], cur.Responses[i], reset)
	}
	d.ConnectErrors = increase(prev.ConnectErrors, cur.ConnectErrors, reset)
	d.ResponseErrors = increase(prev.ResponseErrors, cur.ResponseErrors, reset)
	d.Retries = increase(prev.Retries, cur.Retries, reset)
	d.Redispatches = increase(prev.Redispatches, cur.Redispatches, reset)
	d.CheckFailures = increase(prev.CheckFailures, cur.CheckFailures, reset)
	d.BytesIn = increase(prev.BytesIn, cur.BytesIn, reset)
	d.BytesOut = increase(prev.BytesOut, cur.BytesOut, reset)
	return d
}

// acc sums the increases and gauges of one member's or service's rows at one sample.
type acc struct {
	d        Reading // increases, sessions and queue summed
	up       bool
	respW    float64 // Σ RespMS × weight
	weight   float64
	firstRsp float64
	rows     int
}

func (a *acc) add(d Reading, cumulative uint64) {
	if a.rows == 0 {
		a.firstRsp = d.RespMS
	}
	a.rows++
	a.d.Requests += d.Requests
	for i := range d.Responses {
		a.d.Responses[i] += d.Responses[i]
	}
	a.d.ConnectErrors += d.ConnectErrors
	a.d.ResponseErrors += d.ResponseErrors
	a.d.Retries += d.Retries
	a.d.Redispatches += d.Redispatches
	a.d.CheckFailures += d.CheckFailures
	a.d.BytesIn += d.BytesIn
	a.d.BytesOut += d.BytesOut
	a.d.Sessions += d.Sessions
	a.d.Queue += d.Queue
	a.up = a.up || d.Up
	a.respW += d.RespMS * float64(cumulative)
	a.weight += float64(cumulative)
}

func (a *acc) respMS() float64 {
	if a.weight == 0 {
		return a.firstRsp
	}
	return a.respW / a.weight
}

// apply adds one sample's increases to s and returns the sample.
func (s *series) apply(a *acc, t time.Time) point {
	c := &s.c
	c.Requests += a.d.Requests
	for i := range a.d.Responses {
		c.Responses[i] += a.d.Responses[i]
	}
	c.ConnectErrors += a.d.ConnectErrors
	c.ResponseErrors += a.d.ResponseErrors
	c.Retries += a.d.Retries
	c.Redispatches += a.d.Redispatches
	c.CheckFailures += a.d.CheckFailures
	c.BytesIn += a.d.BytesIn
	c.BytesOut += a.d.BytesOut
	c.Sessions, c.Queue, c.RespMS, c.Up = a.d.Sessions, a.d.Queue, a.respMS(), a.up
	p := point{t: t.UnixNano(), respMS: float32(c.RespMS), sessions: int32(min(c.Sessions, 1<<31-1)), queue: int32(min(c.Queue, 1<<31-1)), requests: c.Requests}
	if !s.last.IsZero() && t.After(s.last) {
		secs := t.Sub(s.last).Seconds()
		p.reqRate = float32(float64(a.d.Requests) / secs)
		p.errRate = float32(float64(a.d.Responses[4]+a.d.ConnectErrors+a.d.ResponseErrors) / secs)
	}
	s.last, s.latest = t, p
	return p
}

func (s *series) latestSample() *Sample {
	if s.last.IsZero() {
		return nil
	}
	v := s.latest.sample()
	return &v
}

// Add takes one sample. Services and members absent from it are dropped, with their history.
func (h *History) Add(in Input) {
	h.mu.Lock()
	defer h.mu.Unlock()
	reset := in.Epoch != h.epoch
	h.epoch = in.Epoch
	raw := make(map[string]Reading, len(h.raw))
	step := func(src Source) Reading {
		prev, seen := h.raw[src.Key]
		raw[src.Key] = src.Reading
		return delta(prev, seen, src.Reading, reset)
	}
	total := 0 // members, for the size of new rings (a member in two backends counts twice)
	for _, si := range in.Services {
		for _, src := range si.Servers {
			if src.Member != "" {
				total++
			}
		}
	}
	services := make(map[string]*serviceSeries, len(in.Services))
	for name, si := range in.Services {
		ss := h.services[name]
		if ss == nil {
			ss = &serviceSeries{members: map[string]*series{}}
		}
		var tot acc
		for _, b := range si.Backends {
			tot.add(step(b), b.Requests)
		}
		byMember := map[string]*acc{}
		for _, src := range si.Servers {
			d := step(src)
			if src.Member == "" {
				continue
			}
			a := byMember[src.Member]
			if a == nil {
				a = &acc{}
				byMember[src.Member] = a
			}
			a.add(d, src.Requests)
		}
		members := make(map[string]*series, len(byMember))
		up := 0
		for m, a := range byMember {
			s := ss.members[m]
			if s == nil {
				s = &series{size: h.capacity(total)}
			}
			s.push(s.apply(a, in.Time))
			members[m] = s
			if s.c.Up {
				up++
			}
		}
		ss.members = members
		// A service keeps its latest sample only (no ring).
		ss.totals.apply(&tot, in.Time)
		ss.totals.c.Up, ss.totals.c.MembersUp, ss.totals.c.Members = up > 0, up, len(members)
		services[name] = ss
	}
	h.raw, h.services, h.latest = raw, services, in.Time
}

// ServiceStats is one service's history.
type ServiceStats struct {
	// Totals is the latest sample of the service's backends together (nil: none yet).
	Totals *Sample
	// Counters are the service's and each member's counters now.
	Counters Counters
	Members  map[string]MemberStats
}

// MemberStats is one member's counters and samples.
type MemberStats struct {
	Counters Counters
	// Samples are oldest first.
	Samples []Sample
}

// Snapshot returns every service's history, with the member samples taken after since (zero:
// every sample kept); Totals is the latest sample whatever since says. Samples older than the window before the latest sample are left out (haproxy
// may not have been sampled for a while).
func (h *History) Snapshot(since time.Time) map[string]ServiceStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	cutoff := h.latest.Add(-h.window)
	out := make(map[string]ServiceStats, len(h.services))
	for name, ss := range h.services {
		st := ServiceStats{Counters: ss.totals.c, Totals: ss.totals.latestSample(), Members: make(map[string]MemberStats, len(ss.members))}
		for m, s := range ss.members {
			st.Members[m] = MemberStats{Counters: s.c, Samples: s.samples(since, cutoff)}
		}
		out[name] = st
	}
	return out
}

// Services lists the services with stats, sorted.
func (h *History) Services() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.services))
}

// ServiceCounters are a service's counters and its members'.
type ServiceCounters struct {
	Counters
	Members map[string]Counters
}

// Counters returns every service's and member's counters now (no samples: for scrapes).
func (h *History) Counters() map[string]ServiceCounters {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]ServiceCounters, len(h.services))
	for name, ss := range h.services {
		sc := ServiceCounters{Counters: ss.totals.c, Members: make(map[string]Counters, len(ss.members))}
		for m, s := range ss.members {
			sc.Members[m] = s.c
		}
		out[name] = sc
	}
	return out
}

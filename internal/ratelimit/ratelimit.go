// Package ratelimit limits events per source (failed authentications per client address) with
// token buckets in bounded memory.
package ratelimit

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxSources bounds the number of sources a Limiter remembers.
const DefaultMaxSources = 65536

// Limiter gives each source a bucket of Burst tokens that refills by one token every Every.
// An event takes a token; a source with no token left is blocked until one has refilled. It is
// safe for concurrent use.
type Limiter struct {
	burst float64
	every time.Duration
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a Limiter allowing burst events at once per source and one more every every.
// maxSources bounds memory (DefaultMaxSources when <= 0); now is the clock (time.Now when nil).
func New(burst int, every time.Duration, maxSources int, now func() time.Time) *Limiter {
	if maxSources <= 0 {
		maxSources = DefaultMaxSources
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{burst: float64(max(burst, 1)), every: max(every, time.Millisecond), max: maxSources, now: now, buckets: map[string]bucket{}}
}

// Source is the bucket key of a client address: the address itself for IPv4, its /64 for IPv6
// (one host usually holds a whole /64), the text as given when it is not an address.
func Source(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// refill returns b's tokens at now.
func (l *Limiter) refill(b bucket, now time.Time) float64 {
	return math.Min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.every))
}

// Blocked reports whether src has no token left, and if so how long until it has one.
func (l *Limiter) Blocked(src string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		return 0, false
	}
	now := l.now()
	t := l.refill(b, now)
	if t >= 1 {
		return 0, false
	}
	return time.Duration(math.Ceil((1 - t) * float64(l.every))), true
}

// Take records an event of src, taking one of its tokens (none are left below zero).
func (l *Limiter) Take(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[src]
	if !ok {
		l.makeRoom(now)
		b = bucket{tokens: l.burst, at: now}
	}
	b.tokens = math.Max(0, l.refill(b, now)-1)
	b.at = now
	l.buckets[src] = b
}

// makeRoom keeps the map under max: first it forgets sources whose bucket is full again (they
// are no different from unknown ones), then, under a flood of sources, arbitrary ones.
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.buckets) < l.max {
		return
	}
	for k, b := range l.buckets {
		if l.refill(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, k)
	}
}

// Len returns the number of remembered sources.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

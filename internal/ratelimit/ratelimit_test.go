package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimiter(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(3, 10*time.Second, 0, c.now)
	steps := []struct {
		name    string
		advance time.Duration
		take    int
		src     string
		blocked bool
		wait    time.Duration
	}{
		{name: "unknown source", src: "a", blocked: false},
		{name: "two failures", src: "a", take: 2, blocked: false},
		{name: "third failure blocks", src: "a", take: 1, blocked: true, wait: 10 * time.Second},
		{name: "other source unaffected", src: "b", blocked: false},
		{name: "half refilled", src: "a", advance: 5 * time.Second, blocked: true, wait: 5 * time.Second},
		{name: "one token back", src: "a", advance: 5 * time.Second, blocked: false},
		{name: "spent again", src: "a", take: 1, blocked: true, wait: 10 * time.Second},
		{name: "more failures never go below zero", src: "a", take: 5, blocked: true, wait: 10 * time.Second},
		{name: "fully refilled", src: "a", advance: time.Hour, blocked: false},
	}
	for _, s := range steps {
		c.t = c.t.Add(s.advance)
		for range s.take {
			l.Take(s.src)
		}
		wait, blocked := l.Blocked(s.src)
		if blocked != s.blocked || wait != s.wait {
			t.Errorf("%s: Blocked(%s) = %v, %v; want %v, %v", s.name, s.src, wait, blocked, s.wait, s.blocked)
		}
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(2, time.Second, 100, c.now)
	for i := range 10_000 {
		l.Take(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if n := l.Len(); n > 100 {
			t.Fatalf("after %d sources Len() = %d, want at most 100", i+1, n)
		}
	}
	// The newest source is remembered.
	l.Take("10.0.39.15")
	if _, blocked := l.Blocked("10.0.39.15"); !blocked {
		t.Errorf("a source that failed twice is not blocked")
	}
}

func TestSource(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
	}
	for _, tt := range tests {
		if got := Source(tt.in); got != tt.want {
			t.Errorf("Source(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

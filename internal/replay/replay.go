// Package replay remembers accepted one-time values (request nonces, signatures) until they
// expire, to refuse a second use. A min-heap on the expiry time lets every insert prune the
// expired entries first, so memory stays bounded by the cache's maximum; a full cache refuses
// new values rather than forget one that could still be replayed.
package replay

import (
	"container/heap"
	"errors"
	"sync"
	"time"
)

var (
	// ErrReplayed: the value was accepted before and has not expired.
	ErrReplayed = errors.New("replayed")
	// ErrFull: the cache holds max unexpired values.
	ErrFull = errors.New("too many values to remember")
)

// Cache is safe for concurrent use.
type Cache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time
	exp  expiryHeap
}

// New returns a cache of at most max values.
func New(max int) *Cache { return &Cache{max: max, seen: map[string]time.Time{}} }

// SetMax changes the bound (before use).
func (c *Cache) SetMax(max int) {
	c.mu.Lock()
	c.max = max
	c.mu.Unlock()
}

// Add records id until the time until, or fails with ErrReplayed if id is known or ErrFull if
// the cache is full. Values whose time ended before now are forgotten first (a value is
// remembered through until itself).
func (c *Cache) Add(id string, until, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.exp) > 0 && c.exp[0].at.Before(now) {
		e := heap.Pop(&c.exp).(expiry)
		delete(c.seen, e.id)
	}
	if _, ok := c.seen[id]; ok {
		return ErrReplayed
	}
	if len(c.seen) >= c.max {
		return ErrFull
	}
	c.seen[id] = until
	heap.Push(&c.exp, expiry{at: until, id: id})
	return nil
}

// Len returns the number of remembered values.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiry struct {
	at time.Time
	id string
}

// expiryHeap is a container/heap of expiries, earliest first.
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*h = old[:len(old)-1]
	return e
}

package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// session is one logged-in browser. The key's secret is not kept: only the key id and a
// digest of its signing key, so a session of a key whose secret was rotated (same id, new
// secret) ends like one whose key was removed.
type session struct {
	keyID string
	// keyDigest is SHA-256 of the key's signing key at login.
	keyDigest [sha256.Size]byte
	csrf      string
	created   time.Time
	seen      time.Time
	// revoked, when set, is why the session ended while clbd keeps it (its key was removed or
	// changed): every request of it is refused with that reason, also ones already on their
	// way, until it expires. It never works again, even if the key comes back.
	revoked string
}

// sessions is a bounded set of sessions by the SHA-256 of their cookie value (the map never
// holds a usable cookie, and lookups do not compare secrets byte by byte).
type sessions struct {
	idle, max time.Duration
	limit     int
	now       func() time.Time

	mu sync.Mutex
	m  map[[sha256.Size]byte]*session
}

func newSessions(idle, max time.Duration, limit int, now func() time.Time) *sessions {
	return &sessions{idle: idle, max: max, limit: limit, now: now, m: map[[sha256.Size]byte]*session{}}
}

// token is 32 random bytes, base64url without padding.
func token() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("console: crypto/rand: " + err.Error()) // never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns its cookie value. When the set is full, expired
// sessions go first, then the one idle longest.
func (s *sessions) create(keyID string, keyDigest [sha256.Size]byte) (id string, sess session) {
	id = token()
	now := s.now()
	sess = session{keyID: keyID, keyDigest: keyDigest, csrf: token(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.limit {
		s.pruneLocked(now)
	}
	for len(s.m) >= s.limit {
		var oldest [sha256.Size]byte
		var at time.Time
		first := true
		for k, v := range s.m {
			if first || v.seen.Before(at) {
				oldest, at, first = k, v.seen, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = &sess
	return id, sess
}

// get returns the session of a cookie value and marks it used; expired sessions are removed.
func (s *sessions) get(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	k := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[k]
	if !ok {
		return session{}, false
	}
	if s.expired(sess, now) {
		delete(s.m, k)
		return session{}, false
	}
	sess.seen = now
	return *sess, true
}

// revoke ends a session but keeps it, with why, until it expires.
func (s *sessions) revoke(id, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.m[sha256.Sum256([]byte(id))]; ok {
		sess.revoked = why
	}
}

// end removes a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.seen) >= s.idle || now.Sub(sess.created) >= s.max
}

func (s *sessions) pruneLocked(now time.Time) {
	for k, v := range s.m {
		if s.expired(v, now) {
			delete(s.m, k)
		}
	}
}

// len is the number of sessions held (expired ones included until they are pruned).
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

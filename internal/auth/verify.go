package auth

import (
	"clb/internal/replay"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrUnauthenticated is wrapped by every error Verify returns. Callers answer 401 with this
// one message whatever the cause, so a client cannot learn which part of a request failed;
// the wrapped detail is for the server's log only and never contains a key or a signature.
var ErrUnauthenticated = errors.New("request signature is missing, stale or invalid")

// DefaultSkew is how far a request's timestamp may be from the verifier's clock.
const DefaultSkew = 5 * time.Minute

// DefaultMaxNonces bounds the replay cache of a Verifier.
const DefaultMaxNonces = 200_000

// Option configures a Verifier.
type Option func(*Verifier)

// WithSkew sets the accepted distance between a request's timestamp and the verifier's clock;
// nonces are remembered for twice as long. Values <= 0 keep DefaultSkew.
func WithSkew(d time.Duration) Option {
	return func(v *Verifier) {
		if d > 0 {
			v.skew = d
		}
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) {
		if now != nil {
			v.now = now
		}
	}
}

// WithMaxNonces bounds the number of remembered nonces. When the cache is full of unexpired
// nonces, Verify refuses new requests rather than forget a nonce that could be replayed.
// Values <= 0 keep DefaultMaxNonces.
func WithMaxNonces(n int) Option {
	return func(v *Verifier) {
		if n > 0 {
			v.nonces.SetMax(n)
		}
	}
}

// Verifier checks signed requests and remembers their nonces to refuse replays. It is safe
// for concurrent use.
type Verifier struct {
	keys   Keys
	skew   time.Duration
	now    func() time.Time
	nonces *replay.Cache
}

// New returns a Verifier that looks keys up in keys.
func New(keys Keys, opts ...Option) *Verifier {
	v := &Verifier{
		keys:   keys,
		skew:   DefaultSkew,
		now:    time.Now,
		nonces: replay.New(DefaultMaxNonces),
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Identity is who signed a request: the key id and what that key may do.
type Identity struct {
	KeyID string
	Scope Scope
}

// Verify checks the signature of r, whose body has already been read into body, and returns
// the key id that signed it. Every failure wraps ErrUnauthenticated. See Authenticate.
func (v *Verifier) Verify(r *http.Request, body []byte) (keyID string, err error) {
	id, err := v.Authenticate(r, body)
	return id.KeyID, err
}

// Authenticate checks the signature of r, whose body has already been read into body, and
// returns the key that signed it with its scope. Every failure wraps ErrUnauthenticated; on
// failure the Identity holds at most the claimed key id, for the log. A nonce is remembered
// only once the signature is valid, so unauthenticated clients cannot fill the replay cache.
func (v *Verifier) Authenticate(r *http.Request, body []byte) (Identity, error) {
	keyID, scope, err := v.verify(r, body)
	return Identity{KeyID: keyID, Scope: scope}, err
}

func (v *Verifier) verify(r *http.Request, body []byte) (keyID string, scope Scope, err error) {
	if r == nil || r.URL == nil {
		return "", scope, fail("no request")
	}
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		return "", scope, fail("missing authorization header")
	}
	if len(authz) > 1 {
		return "", scope, fail("several authorization headers")
	}
	p, err := parseAuthorization(authz[0])
	if err != nil {
		return "", scope, err
	}

	hashes := r.Header.Values(HeaderContentSHA256)
	if len(hashes) != 1 {
		return p.keyID, scope, fail("missing or repeated content hash header")
	}
	bodyHash := hashes[0]
	got, err := hex.DecodeString(bodyHash)
	sum := sha256.Sum256(body)
	if err != nil || !hmac.Equal(got, sum[:]) {
		return p.keyID, scope, fail("body does not match the content hash")
	}

	k, ok := v.keys.Lookup(p.keyID)
	key := k.Signing
	if !ok {
		return p.keyID, scope, fail(fmt.Sprintf("unknown key id %q", p.keyID))
	}

	now := v.now()
	t := time.Unix(p.ts, 0)
	if now.Sub(t) > v.skew {
		return p.keyID, scope, fail("stale timestamp")
	}
	if t.Sub(now) > v.skew {
		return p.keyID, scope, fail("timestamp in the future")
	}

	want := signature(key, p.keyID, p.tsText, p.nonce, r.Method, r.URL.EscapedPath(), r.URL.RawQuery, bodyHash)
	if !hmac.Equal(p.sig, want) {
		return p.keyID, scope, fail("bad signature")
	}

	switch err := v.nonces.Add(p.keyID+"\x00"+p.nonce, now.Add(2*v.skew), now); {
	case errors.Is(err, replay.ErrReplayed):
		return p.keyID, scope, fail("replayed nonce")
	case err != nil:
		return p.keyID, scope, fail("nonce cache full")
	}
	return p.keyID, k.Scope, nil
}

// fail wraps ErrUnauthenticated with a detail for the log.
func fail(detail string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, detail)
}

// authParams are the fields of an Authorization header.
type authParams struct {
	keyID  string
	tsText string
	ts     int64
	nonce  string
	sig    []byte
}

// parseAuthorization parses "CLB1-HMAC-SHA256 key=ID, ts=UNIX, nonce=HEX32, sig=HEX64" strictly:
// each parameter exactly once, in any order, nothing else.
func parseAuthorization(h string) (authParams, error) {
	var p authParams
	if len(h) > maxHeaderLen {
		return p, fail("authorization header too long")
	}
	rest, ok := strings.CutPrefix(h, Scheme+" ")
	if !ok {
		return p, fail("authorization scheme is not " + Scheme)
	}
	parts := strings.Split(rest, ",")
	if len(parts) != 4 {
		return p, fail("garbled authorization header")
	}
	var seen [4]bool
	for _, part := range parts {
		k, val, ok := strings.Cut(strings.Trim(part, " \t"), "=")
		if !ok {
			return p, fail("garbled authorization header")
		}
		var i int
		switch k {
		case "key":
			i = 0
			if ValidateKeyID(val) != nil {
				return p, fail("garbled key id")
			}
			p.keyID = val
		case "ts":
			i = 1
			ts, ok := parseTimestamp(val)
			if !ok {
				return p, fail("garbled timestamp")
			}
			p.tsText, p.ts = val, ts
		case "nonce":
			i = 2
			if len(val) != 2*nonceBytes || !isHex(val) {
				return p, fail("garbled nonce")
			}
			p.nonce = val
		case "sig":
			i = 3
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				return p, fail("garbled signature")
			}
			p.sig = sig
		default:
			return p, fail("unknown authorization parameter")
		}
		if seen[i] {
			return p, fail("repeated authorization parameter")
		}
		seen[i] = true
	}
	return p, nil
}

// parseTimestamp accepts canonical decimal unix seconds only: no sign, no leading zeros, so
// that one timestamp has exactly one spelling in the string to sign.
func parseTimestamp(s string) (int64, bool) {
	if s == "" || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	return ts, err == nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

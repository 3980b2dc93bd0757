package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	t0       = time.Unix(1_700_000_000, 0)
	testKey  = DeriveKey([]byte("s3cret"))
	otherKey = DeriveKey([]byte("other"))
	keys     = StaticKeys{"default": testKey, "web-1": otherKey}
)

const (
	testTarget = "http://lb.example:8090/v1/services/web/members/m1?wait=true"
	testBody   = `{"address":"10.0.0.5","port":8080}`
	testNonce  = "00112233445566778899aabbccddeeff"
)

// newSigned returns a request for target signed at t0 with the fixed test nonce.
func newSigned(t testing.TB, method, target, body, keyID string, key []byte) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if err := sign(r, keyID, key, []byte(body), t0, testNonce); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return r
}

func TestDeriveKey(t *testing.T) {
	k := DeriveKey([]byte("s3cret"))
	if len(k) != KeySize {
		t.Fatalf("len(DeriveKey) = %d, want %d", len(k), KeySize)
	}
	if !bytes.Equal(k, DeriveKey([]byte("s3cret"))) {
		t.Errorf("DeriveKey is not deterministic")
	}
	if bytes.Equal(k, DeriveKey([]byte("s3cret2"))) {
		t.Errorf("different passwords derive the same key")
	}
	if bytes.Equal(k, []byte("s3cret")) {
		t.Errorf("DeriveKey returned the password")
	}
}

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{name: "plain", content: "hunter2", want: "hunter2"},
		{name: "newline", content: "hunter2\n", want: "hunter2"},
		{name: "surrounding", content: " \t hunter 2 \r\n\n", want: "hunter 2"},
		{name: "empty", content: "", wantErr: "file is empty"},
		{name: "blank", content: " \n\t\n", wantErr: "file is empty"},
		{name: "missing", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if tt.name != "missing" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadPasswordFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadPasswordFile() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadPasswordFile() error = %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("ReadPasswordFile() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSignHeaders(t *testing.T) {
	r := httptest.NewRequest(http.MethodPut, testTarget, nil)
	if err := Sign(r, "default", testKey, []byte(testBody), t0); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(testBody))
	if got, want := r.Header.Get(HeaderContentSHA256), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("content hash = %q, want %q", got, want)
	}
	a := r.Header.Get("Authorization")
	p, err := parseAuthorization(a)
	if err != nil {
		t.Fatalf("parse own header %q: %v", a, err)
	}
	if p.keyID != "default" || p.ts != t0.Unix() || len(p.nonce) != 32 || strings.ToLower(p.nonce) != p.nonce {
		t.Errorf("header %q: got key=%q ts=%d nonce=%q", a, p.keyID, p.ts, p.nonce)
	}
	// Two signatures of the same request differ by their nonce.
	r2 := httptest.NewRequest(http.MethodPut, testTarget, nil)
	if err := Sign(r2, "default", testKey, []byte(testBody), t0); err != nil {
		t.Fatal(err)
	}
	if r2.Header.Get("Authorization") == a {
		t.Errorf("two signatures are identical: nonce is not random")
	}
}

func TestSignRefuses(t *testing.T) {
	tests := []struct {
		name  string
		keyID string
		key   []byte
	}{
		{"empty key id", "", testKey},
		{"comma in key id", "a,b", testKey},
		{"space in key id", "a b", testKey},
		{"long key id", strings.Repeat("k", 65), testKey},
		{"empty key", "default", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, testTarget, nil)
			if err := Sign(r, tt.keyID, tt.key, nil, t0); err == nil {
				t.Errorf("Sign(%q) = nil, want error", tt.keyID)
			}
		})
	}
}

// TestStringToSign pins the wire format of docs/CONTRACTS.md with an independent computation.
func TestStringToSign(t *testing.T) {
	r := newSigned(t, http.MethodPut, testTarget, testBody, "default", testKey)
	sum := sha256.Sum256([]byte(testBody))
	sts := "CLB1-HMAC-SHA256\ndefault\n1700000000\n" + testNonce + "\nPUT\n/v1/services/web/members/m1\nwait=true\n" + hex.EncodeToString(sum[:])
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(sts))
	want := "CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=" + testNonce + ", sig=" + hex.EncodeToString(m.Sum(nil))
	if got := r.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization =\n%s\nwant\n%s", got, want)
	}
}

func TestVerify(t *testing.T) {
	tamper := func(f func(r *http.Request) *http.Request) func(*http.Request) *http.Request { return f }
	setHeader := func(v string) func(*http.Request) *http.Request {
		return func(r *http.Request) *http.Request { r.Header.Set("Authorization", v); return r }
	}
	validAuth := newSigned(t, http.MethodPut, testTarget, testBody, "default", testKey).Header.Get("Authorization")
	sig := validAuth[strings.Index(validAuth, "sig=")+4:]
	head := "CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=" + testNonce

	tests := []struct {
		name    string
		keyID   string        // signing key id; default "default"
		key     []byte        // signing key; default testKey
		body    string        // body given to Verify; default testBody
		clock   time.Duration // verifier clock offset from t0
		mutate  func(*http.Request) *http.Request
		wantErr string // detail; "" = accepted
		wantID  string
	}{
		{name: "valid", wantID: "default"},
		{name: "second key", keyID: "web-1", key: otherKey, wantID: "web-1"},
		{name: "within skew past", clock: 5 * time.Minute, wantID: "default"},
		{name: "within skew future", clock: -5 * time.Minute, wantID: "default"},
		{name: "stale", clock: 5*time.Minute + time.Second, wantErr: "stale timestamp"},
		{name: "future", clock: -5*time.Minute - time.Second, wantErr: "timestamp in the future"},
		{name: "wrong key", key: otherKey, wantErr: "bad signature"},
		{name: "unknown key id", keyID: "nobody", wantErr: `unknown key id "nobody"`},
		{name: "tampered body", body: `{"address":"10.0.0.6","port":8080}`, wantErr: "body does not match"},
		{name: "tampered body and hash", mutate: tamper(func(r *http.Request) *http.Request {
			sum := sha256.Sum256([]byte("{}"))
			r.Header.Set(HeaderContentSHA256, hex.EncodeToString(sum[:]))
			return r
		}), body: "{}", wantErr: "bad signature"},
		{name: "tampered path", mutate: tamper(func(r *http.Request) *http.Request {
			r.URL.Path = "/v1/services/db/members/m1"
			return r
		}), wantErr: "bad signature"},
		{name: "tampered escaped path", mutate: tamper(func(r *http.Request) *http.Request {
			r.URL.Path, r.URL.RawPath = "/v1/services/web/members/m1/", ""
			return r
		}), wantErr: "bad signature"},
		{name: "tampered query", mutate: tamper(func(r *http.Request) *http.Request {
			r.URL.RawQuery = "wait=false"
			return r
		}), wantErr: "bad signature"},
		{name: "dropped query", mutate: tamper(func(r *http.Request) *http.Request {
			r.URL.RawQuery = ""
			return r
		}), wantErr: "bad signature"},
		{name: "tampered method", mutate: tamper(func(r *http.Request) *http.Request {
			r.Method = http.MethodDelete
			return r
		}), wantErr: "bad signature"},
		{name: "tampered key id", mutate: setHeader("CLB1-HMAC-SHA256 key=web-1, ts=1700000000, nonce=" + testNonce + ", sig=" + sig), wantErr: "bad signature"},
		{name: "tampered ts", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000001, nonce=" + testNonce + ", sig=" + sig), wantErr: "bad signature"},
		{name: "tampered nonce", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=" + strings.Repeat("1", 32) + ", sig=" + sig), wantErr: "bad signature"},
		{name: "tampered sig", mutate: setHeader(head + ", sig=" + strings.Repeat("0", 64)), wantErr: "bad signature"},
		{name: "params reordered", mutate: setHeader("CLB1-HMAC-SHA256 sig=" + sig + ", nonce=" + testNonce + ", ts=1700000000, key=default"), wantID: "default"},
		{name: "no spaces", mutate: setHeader("CLB1-HMAC-SHA256 key=default,ts=1700000000,nonce=" + testNonce + ",sig=" + sig), wantID: "default"},
		{name: "uppercase sig", mutate: setHeader(head + ", sig=" + strings.ToUpper(sig)), wantID: "default"},
		{name: "missing authorization", mutate: tamper(func(r *http.Request) *http.Request {
			r.Header.Del("Authorization")
			return r
		}), wantErr: "missing authorization"},
		{name: "two authorization headers", mutate: tamper(func(r *http.Request) *http.Request {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
			return r
		}), wantErr: "several authorization"},
		{name: "missing content hash", mutate: tamper(func(r *http.Request) *http.Request {
			r.Header.Del(HeaderContentSHA256)
			return r
		}), wantErr: "content hash header"},
		{name: "garbled content hash", mutate: tamper(func(r *http.Request) *http.Request {
			r.Header.Set(HeaderContentSHA256, "xyz")
			return r
		}), wantErr: "body does not match"},
		{name: "empty header", mutate: setHeader(""), wantErr: "scheme"},
		{name: "basic auth", mutate: setHeader("Basic ZGVmYXVsdDpzM2NyZXQ="), wantErr: "scheme"},
		{name: "scheme only", mutate: setHeader("CLB1-HMAC-SHA256 "), wantErr: "garbled"},
		{name: "lowercase scheme", mutate: setHeader("clb1-hmac-sha256 key=default, ts=1700000000, nonce=" + testNonce + ", sig=" + sig), wantErr: "scheme"},
		{name: "missing sig", mutate: setHeader(head), wantErr: "garbled"},
		{name: "extra param", mutate: setHeader(head + ", sig=" + sig + ", x=1"), wantErr: "garbled"},
		{name: "unknown param", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=" + testNonce + ", sug=" + sig), wantErr: "unknown authorization parameter"},
		{name: "repeated param", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000000, ts=1700000000, sig=" + sig), wantErr: "repeated"},
		{name: "param without value", mutate: setHeader(head + ", sig"), wantErr: "garbled"},
		{name: "empty key id", mutate: setHeader("CLB1-HMAC-SHA256 key=, ts=1700000000, nonce=" + testNonce + ", sig=" + sig), wantErr: "garbled key id"},
		{name: "leading zero ts", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=01700000000, nonce=" + testNonce + ", sig=" + sig), wantErr: "garbled timestamp"},
		{name: "negative ts", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=-1700000000, nonce=" + testNonce + ", sig=" + sig), wantErr: "garbled timestamp"},
		{name: "huge ts", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=99999999999999999999, nonce=" + testNonce + ", sig=" + sig), wantErr: "garbled timestamp"},
		{name: "ts not a number", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=now, nonce=" + testNonce + ", sig=" + sig), wantErr: "garbled timestamp"},
		{name: "short nonce", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=0011, sig=" + sig), wantErr: "garbled nonce"},
		{name: "nonce not hex", mutate: setHeader("CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=" + strings.Repeat("g", 32) + ", sig=" + sig), wantErr: "garbled nonce"},
		{name: "short sig", mutate: setHeader(head + ", sig=" + sig[:62]), wantErr: "garbled signature"},
		{name: "sig not hex", mutate: setHeader(head + ", sig=" + strings.Repeat("z", 64)), wantErr: "garbled signature"},
		{name: "too long", mutate: setHeader(head + ", sig=" + sig + strings.Repeat(" ", 600)), wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyID, key, body := tt.keyID, tt.key, tt.body
			if keyID == "" {
				keyID = "default"
			}
			if key == nil {
				key = testKey
			}
			if body == "" {
				body = testBody
			}
			r := newSigned(t, http.MethodPut, testTarget, testBody, keyID, key)
			if tt.mutate != nil {
				r = tt.mutate(r)
			}
			v := New(keys, WithClock(func() time.Time { return t0.Add(tt.clock) }))
			gotID, err := v.Verify(r, []byte(body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify() error = %v, want nil", err)
				}
				if gotID != tt.wantID {
					t.Errorf("Verify() key id = %q, want %q", gotID, tt.wantID)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify() = nil, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("Verify() error %v does not wrap ErrUnauthenticated", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify() error = %q, want containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), sig) || strings.Contains(err.Error(), hex.EncodeToString(testKey)) {
				t.Errorf("Verify() error %q reveals the signature or key", err)
			}
			if v.nonces.Len() != 0 {
				t.Errorf("refused request left %d nonces in the cache", v.nonces.Len())
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	clock := t0
	v := New(keys, WithClock(func() time.Time { return clock }))
	r := newSigned(t, http.MethodPut, testTarget, testBody, "default", testKey)
	if _, err := v.Verify(r, []byte(testBody)); err != nil {
		t.Fatalf("first Verify() = %v", err)
	}
	for _, d := range []time.Duration{0, time.Minute, 5 * time.Minute} {
		clock = t0.Add(d)
		if _, err := v.Verify(r, []byte(testBody)); err == nil || !strings.Contains(err.Error(), "replayed nonce") {
			t.Errorf("replay at +%v: Verify() = %v, want replayed nonce", d, err)
		}
	}
	// The same nonce under another key id is another request.
	r2 := newSigned(t, http.MethodPut, testTarget, testBody, "web-1", otherKey)
	if _, err := v.Verify(r2, []byte(testBody)); err != nil {
		t.Errorf("same nonce, other key: Verify() = %v", err)
	}
	// Once the window has passed, the timestamp is stale: the replay is still refused.
	clock = t0.Add(10*time.Minute + time.Second)
	if _, err := v.Verify(r, []byte(testBody)); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("replay after the window: Verify() = %v, want stale", err)
	}
}

func TestNonceCacheBounded(t *testing.T) {
	clock := t0
	v := New(keys, WithMaxNonces(3), WithClock(func() time.Time { return clock }))
	signAt := func(at time.Time, i int) *http.Request {
		r := httptest.NewRequest(http.MethodPut, testTarget, nil)
		if err := sign(r, "default", testKey, nil, at, fmt.Sprintf("%032x", i)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 3 {
		if _, err := v.Verify(signAt(clock, i), nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := v.Verify(signAt(clock, 3), nil); err == nil || !strings.Contains(err.Error(), "nonce cache full") {
		t.Fatalf("4th request: Verify() = %v, want nonce cache full", err)
	}
	// Still within 2×skew: nothing expires, still full.
	clock = t0.Add(10 * time.Minute)
	if _, err := v.Verify(signAt(clock, 4), nil); err == nil || !strings.Contains(err.Error(), "nonce cache full") {
		t.Fatalf("at +10m: Verify() = %v, want nonce cache full", err)
	}
	// After 2×skew the old nonces are pruned.
	clock = t0.Add(10*time.Minute + time.Second)
	if _, err := v.Verify(signAt(clock, 5), nil); err != nil {
		t.Fatalf("after expiry: Verify() = %v", err)
	}
	if got := v.nonces.Len(); got != 1 {
		t.Errorf("nonces after pruning = %d, want 1", got)
	}
}

func TestStaticKeysEmptyKey(t *testing.T) {
	if _, ok := (StaticKeys{"x": nil}).Lookup("x"); ok {
		t.Errorf("Lookup of an empty key = ok, want not found")
	}
}

// TestVerifyConcurrent runs many verifications at once; run with -race. Every fresh request
// is accepted and a request replayed from every goroutine is accepted exactly once.
func TestVerifyConcurrent(t *testing.T) {
	v := New(keys)
	now := time.Now()
	shared := httptest.NewRequest(http.MethodPut, testTarget, nil)
	if err := Sign(shared, "default", testKey, []byte(testBody), now); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var accepted atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			r := shared.Clone(shared.Context())
			if _, err := v.Verify(r, []byte(testBody)); err == nil {
				accepted.Add(1)
			}
			for range each {
				r := httptest.NewRequest(http.MethodPost, "http://lb/v1/services/web/members", nil)
				if err := Sign(r, "web-1", otherKey, []byte(testBody), time.Now()); err != nil {
					errs <- err
					continue
				}
				if _, err := v.Verify(r, []byte(testBody)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("fresh request refused: %v", err)
	}
	if got := accepted.Load(); got != 1 {
		t.Errorf("shared request accepted %d times, want 1", got)
	}
	if got, want := v.nonces.Len(), workers*each+1; got != want {
		t.Errorf("remembered nonces = %d, want %d", got, want)
	}
}

// refSignature is an independent reading of the contract used as the fuzz oracle: it returns
// the signature a holder of key would have produced for the header's fields.
func refSignature(key []byte, header, method, path, query, bodyHash string) (string, bool) {
	rest, ok := strings.CutPrefix(header, "CLB1-HMAC-SHA256 ")
	if !ok {
		return "", false
	}
	f := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		f[k] = v
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "CLB1-HMAC-SHA256\n%s\n%s\n%s\n%s\n%s\n%s\n%s", f["key"], f["ts"], f["nonce"], method, path, query, bodyHash)
	return hex.EncodeToString(m.Sum(nil)), strings.EqualFold(f["sig"], hex.EncodeToString(m.Sum(nil)))
}

// FuzzVerify feeds arbitrary Authorization headers, content hashes and bodies to Verify: it must
// never panic, and whatever it accepts must carry a signature made with the key.
func FuzzVerify(f *testing.F) {
	valid := newSigned(f, http.MethodPut, testTarget, testBody, "default", testKey)
	auth, hash := valid.Header.Get("Authorization"), valid.Header.Get(HeaderContentSHA256)
	f.Add(auth, hash, []byte(testBody))
	f.Add(auth, hash, []byte(testBody+" "))
	f.Add(strings.Replace(auth, "key=default", "key=web-1", 1), hash, []byte(testBody))
	f.Add(strings.ReplaceAll(auth, ", ", ","), hash, []byte(testBody))
	f.Add(auth[:len(auth)-1], hash, []byte(testBody))
	f.Add("CLB1-HMAC-SHA256 key=default, ts=1700000000, nonce=, sig=", "", []byte(nil))
	f.Add("CLB1-HMAC-SHA256 key=a=b, ts=1, nonce=1, sig=1, x", strings.ToUpper(hash), []byte{0, 0xff})
	f.Add("", "", []byte(""))
	f.Fuzz(func(t *testing.T, authz, contentHash string, body []byte) {
		r := httptest.NewRequest(http.MethodPut, testTarget, bytes.NewReader(body))
		r.Header.Set("Authorization", authz)
		r.Header.Set(HeaderContentSHA256, contentHash)
		v := New(keys, WithClock(func() time.Time { return t0 }))
		id, err := v.Verify(r, body)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Verify() error %v does not wrap ErrUnauthenticated", err)
			}
			return
		}
		key, ok := keys[id]
		if !ok {
			t.Fatalf("accepted unknown key id %q", id)
		}
		sum := sha256.Sum256(body)
		if !strings.EqualFold(contentHash, hex.EncodeToString(sum[:])) {
			t.Fatalf("accepted content hash %q for a body hashing to %x", contentHash, sum)
		}
		if want, ok := refSignature(key, authz, http.MethodPut, "/v1/services/web/members/m1", "wait=true", contentHash); !ok {
			t.Fatalf("accepted %q, whose signature is not %s", authz, want)
		}
	})
}

func BenchmarkSignVerify(b *testing.B) {
	body := []byte(testBody)
	v := New(keys, WithMaxNonces(b.N+1))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r := httptest.NewRequest(http.MethodPut, testTarget, nil)
		if err := Sign(r, "default", testKey, body, time.Now()); err != nil {
			b.Fatal(err)
		}
		if _, err := v.Verify(r, body); err != nil {
			b.Fatal(err)
		}
	}
}

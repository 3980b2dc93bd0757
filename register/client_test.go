package register

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/internal/model"
)

func TestParseServer(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "lb.example", want: "http://lb.example:8090"},
		{in: "lb.example:8091", want: "http://lb.example:8091"},
		{in: " lb.example\n", want: "http://lb.example:8090"},
		{in: "10.0.0.1", want: "http://10.0.0.1:8090"},
		{in: "localhost", want: "http://localhost:8090"},
		{in: "http://lb.example:8090", want: "http://lb.example:8090"},
		{in: "http://lb.example", want: "http://lb.example:8090"},
		{in: "https://lb.example", want: "https://lb.example:8090"},
		{in: "https://lb.example:443/clb/", want: "https://lb.example:443/clb"},
		{in: "HTTP://lb.example:80", want: "http://lb.example:80"},
		{in: "[::1]:8090", want: "http://[::1]:8090"},
		{in: "[::1]", want: "http://[::1]:8090"},
		{in: "::1", want: "http://[::1]:8090"},
		{in: "http://[2001:db8::1]:9000", want: "http://[2001:db8::1]:9000"},
		{in: "", wantErr: "server is empty"},
		{in: "ftp://lb.example", wantErr: `scheme "ftp"`},
		{in: "lb.example:0", wantErr: "want 1-65535"},
		{in: "lb.example:99999", wantErr: "want 1-65535"},
		{in: "lb.example:http", wantErr: "want 1-65535"},
		{in: "lb.example:", wantErr: "empty port"},
		{in: "http://lb.example:", wantErr: "empty port"},
		{in: "http://user:pw@lb.example", wantErr: "credentials"},
		{in: "http://lb.example/?x=1", wantErr: "query"},
		{in: "lb.example/v1", wantErr: "want HOST, HOST:PORT or a URL"},
		{in: "lb_example", wantErr: "not a host name"},
		{in: "-lb", wantErr: "not a host name"},
		{in: "http://", wantErr: "not a host name"},
		{in: "[fe80::1%eth0]:8090", wantErr: "zones"},
		{in: "[::1", wantErr: "want HOST"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseServer(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseServer(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseServer(%q) error = %v", tt.in, err)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("ParseServer(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestClientRequests(t *testing.T) {
	tests := []struct {
		name       string
		unregister bool
		req        Request
		wantMethod string
		wantPath   string
		wantBody   string
		wantMember model.Member
	}{
		{
			name:       "register named",
			req:        Request{Name: "web-1", Address: "10.0.0.5", Port: 8080, Weight: ptr(0), Zone: "a"},
			wantMethod: "PUT", wantPath: "/v1/services/web/members/web-1",
			wantBody:   `{"address":"10.0.0.5","port":8080,"weight":0,"zone":"a"}`,
			wantMember: model.Member{Name: "web-1", Address: "10.0.0.5", Port: 8080, Weight: 0, Zone: "a"},
		},
		{
			name:       "register myself",
			wantMethod: "POST", wantPath: "/v1/services/web/members",
			wantBody:   `{}`,
			wantMember: model.Member{Name: "127.0.0.1:8080", Address: "127.0.0.1", Port: 8080, Weight: 100},
		},
		{
			name:       "register address and port",
			req:        Request{Address: "10.0.0.5", Port: 9000, Weight: ptr(50)},
			wantMethod: "POST", wantPath: "/v1/services/web/members",
			wantBody:   `{"address":"10.0.0.5","port":9000,"weight":50}`,
			wantMember: model.Member{Name: "10.0.0.5:9000", Address: "10.0.0.5", Port: 9000, Weight: 50},
		},
		{
			name:       "unregister named",
			unregister: true,
			req:        Request{Name: "web-1", Address: "10.0.0.5", Weight: ptr(7)},
			wantMethod: "DELETE", wantPath: "/v1/services/web/members/web-1",
			wantBody:   ``,
			wantMember: model.Member{Name: "web-1", Address: "127.0.0.1", Port: 8080, Weight: 100},
		},
		{
			name:       "unregister myself",
			unregister: true,
			req:        Request{Port: 8081, Zone: "ignored"},
			wantMethod: "DELETE", wantPath: "/v1/services/web/members",
			wantBody:   `{"port":8081}`,
			wantMember: model.Member{Name: "127.0.0.1:8081", Address: "127.0.0.1", Port: 8081, Weight: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"))
			c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte("pw"))}
			call := c.Register
			if tt.unregister {
				call = c.Unregister
			}
			res, err := call(context.Background(), "web", tt.req)
			if err != nil {
				t.Fatalf("call error = %v", err)
			}
			calls := srv.Calls()
			if len(calls) != 1 {
				t.Fatalf("server got %d calls, want 1", len(calls))
			}
			got := calls[0]
			if got.method != tt.wantMethod || got.path != tt.wantPath || got.body != tt.wantBody {
				t.Errorf("request = %s %s %s, want %s %s %s", got.method, got.path, got.body, tt.wantMethod, tt.wantPath, tt.wantBody)
			}
			if ct := got.header.Get("Content-Type"); (tt.wantBody != "") != (ct == "application/json") {
				t.Errorf("Content-Type = %q with body %q", ct, tt.wantBody)
			}
			want := Result{Service: "web", Member: tt.wantMember, Applied: true, Attempts: 1}
			if res != want {
				t.Errorf("result = %+v, want %+v", res, want)
			}
		})
	}
}

func TestClientValidates(t *testing.T) {
	tests := []struct {
		name    string
		service string
		req     Request
		wantErr string
	}{
		{"service", "Web", Request{}, "service name"},
		{"empty service", "", Request{}, "service name"},
		{"name", "web", Request{Name: "a/b"}, "member name"},
		{"address", "web", Request{Address: "10.0.0.5\nserver x"}, "address"},
		{"port", "web", Request{Port: 70000}, "port 70000"},
		{"weight", "web", Request{Weight: ptr(257)}, "weight 257"},
		{"zone", "web", Request{Zone: "A Z"}, "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{Server: closedAddr(t), Key: []byte("k")}
			_, err := c.Register(context.Background(), tt.service, tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != ExitUsage {
				t.Errorf("Register() error = %v (exit %d), want usage error containing %q", err, ExitCode(err), tt.wantErr)
			}
			if !errors.Is(err, model.ErrInvalid) {
				t.Errorf("Register() error %v does not wrap model.ErrInvalid", err)
			}
		})
	}
}

func TestClientAnswers(t *testing.T) {
	notApplied := reply{status: 503, code: "not_applied", msg: "change saved but not applied: haproxy -c failed"}
	tests := []struct {
		name         string
		password     string // client's password; server's is "pw"
		unregister   bool
		replies      []reply
		wantKind     Kind // 0 = success
		wantAttempts int
		wantMsg      string
	}{
		{name: "applied", wantAttempts: 1},
		{name: "applied after not applied", replies: []reply{notApplied, notApplied, {status: 200}}, wantAttempts: 3},
		{name: "never applied", replies: []reply{notApplied}, wantKind: KindNotApplied, wantMsg: "haproxy -c failed"},
		{name: "200 not applied", replies: []reply{{status: 200, applied: ptr(false)}}, wantKind: KindNotApplied, wantMsg: "without applying"},
		{name: "200 not from clbd", replies: []reply{{status: 200, raw: "<html>welcome to nginx</html>"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "not from clbd? <html>welcome"},
		{name: "202", replies: []reply{{status: 202}}, wantKind: KindNotApplied, wantAttempts: 1, wantMsg: "did not wait"},
		{name: "wrong password", password: "nope", wantKind: KindAuth, wantAttempts: 1, wantMsg: "request signature is missing, stale or invalid"},
		{name: "forbidden", replies: []reply{{status: 403, code: "forbidden", msg: "key web-1 may not register into db"}}, wantKind: KindAuth, wantAttempts: 1, wantMsg: "may not register"},
		{name: "not found", replies: []reply{{status: 404, code: "not_found", msg: "service web is not defined"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "(404 not_found): service web is not defined"},
		{name: "conflict", replies: []reply{{status: 409, code: "conflict", msg: "address in use by web-2"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "address in use"},
		{name: "bad request", replies: []reply{{status: 400, code: "bad_request", msg: "bad port"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "bad port"},
		{name: "internal error", replies: []reply{{status: 500, raw: "boom\nstack"}}, wantKind: KindUnreachable, wantMsg: "server unavailable (500 Internal Server Error, "},
		{name: "internal error then ok", replies: []reply{{status: 500, code: "internal", msg: "local state not saved: no space left on device"}, {status: 500, raw: "boom"}, {status: 200}}, wantAttempts: 3},
		{name: "not implemented", replies: []reply{{status: 501, raw: "no PUT here"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "(501 Not Implemented): no PUT here"},
		{name: "http version not supported", replies: []reply{{status: 505, raw: "HTTP/1.1 only"}}, wantKind: KindRefused, wantAttempts: 1, wantMsg: "(505 HTTP Version Not Supported)"},
		{name: "store unavailable then ok", replies: []reply{{status: 503, code: "store_unavailable", msg: "the membership store (etcd) is unavailable"}, {status: 200}}, wantAttempts: 2},
		{name: "rate limited then ok", replies: []reply{{status: 429, code: "rate_limited", retryAfter: "0"}, {status: 200}}, wantAttempts: 2},
		{name: "rate limited", replies: []reply{{status: 429, code: "rate_limited", msg: "slow down"}}, wantKind: KindUnreachable, wantMsg: "slow down"},
		{name: "bad gateway then ok", replies: []reply{{status: 502, raw: "<html>bad gateway</html>"}, {status: 504, raw: "timeout"}, {status: 200}}, wantAttempts: 3},
		{name: "proxy unavailable", replies: []reply{{status: 503, raw: "no backend"}}, wantKind: KindUnreachable, wantMsg: "no backend"},
		{name: "retry after beyond timeout", replies: []reply{{status: 503, code: "rate_limited", retryAfter: "3600"}}, wantKind: KindUnreachable, wantAttempts: 1},
		{name: "not applied then unavailable", replies: []reply{notApplied, {status: 502, raw: "bad gateway"}}, wantKind: KindNotApplied, wantMsg: "haproxy -c failed"},
		{name: "not applied then refused", replies: []reply{notApplied, {status: 409, code: "conflict", msg: "renamed"}}, wantKind: KindRefused, wantAttempts: 2},
		// clbd answers 404 only once haproxy runs without the member: the retried unregister is done.
		{name: "unregister not applied then gone", unregister: true, replies: []reply{notApplied, {status: 404, code: "not_found", msg: "member 127.0.0.1:8080 is not registered"}}, wantAttempts: 2},
		{name: "unregister unreachable then gone", unregister: true, replies: []reply{{status: 503, raw: "no backend"}, {status: 404, code: "not_found", msg: "member 127.0.0.1:8080 is not registered"}}, wantAttempts: 2},
		{name: "unregister unknown", unregister: true, replies: []reply{{status: 404, code: "not_found", msg: "member x is not registered"}}, wantKind: KindRefused, wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"), tt.replies...)
			pw := tt.password
			if pw == "" {
				pw = "pw"
			}
			c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte(pw)), Timeout: 300 * time.Millisecond}
			fast(c)
			call := c.Register
			if tt.unregister {
				call = c.Unregister
			}
			res, err := call(context.Background(), "web", Request{})
			if tt.wantKind == 0 {
				if err != nil {
					t.Fatalf("error = %v, want nil", err)
				}
				if !res.Applied || res.Attempts != tt.wantAttempts {
					t.Errorf("result = %+v, want applied after %d attempts", res, tt.wantAttempts)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v (%T), want *Error", err, err)
			}
			if e.Kind != tt.wantKind || ExitCode(err) != tt.wantKind.ExitCode() {
				t.Errorf("error kind = %d (exit %d), want %d: %v", e.Kind, ExitCode(err), tt.wantKind, err)
			}
			if tt.wantAttempts != 0 && e.Attempts != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", e.Attempts, tt.wantAttempts)
			}
			if tt.wantAttempts == 0 && e.Attempts < 2 {
				t.Errorf("attempts = %d, want retries within the timeout", e.Attempts)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want containing %q", err, tt.wantMsg)
			}
			if res.Applied {
				t.Errorf("result applied with an error: %+v", res)
			}
		})
	}
}

// TestClientRetryAfter checks that a server's Retry-After is waited out, using a recording
// sleep instead of the clock.
func TestClientRetryAfter(t *testing.T) {
	rateLimited := func(retryAfter string) reply {
		return reply{status: 429, code: "rate_limited", retryAfter: retryAfter}
	}
	tests := []struct {
		name        string
		first       reply // then 200
		wantAtLeast time.Duration
	}{
		{"seconds", rateLimited("2"), 2 * time.Second},
		{"date", rateLimited(time.Now().Add(4 * time.Second).UTC().Format(http.TimeFormat)), 2 * time.Second},
		{"garbage", rateLimited("soon"), 0},
		{"store unavailable", reply{status: 503, code: "store_unavailable", msg: "the membership store (etcd) is unavailable, so the change was not saved", retryAfter: "1"}, time.Second},
		{"internal error", reply{status: 500, code: "internal", msg: "local state not saved: no space left on device", retryAfter: "1"}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"), tt.first, reply{status: 200})
			var waits []time.Duration
			c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte("pw")), Timeout: time.Minute}
			fast(c)
			c.sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}
			if _, err := c.Register(context.Background(), "web", Request{}); err != nil {
				t.Fatalf("Register() = %v", err)
			}
			if len(waits) != 1 || waits[0] < tt.wantAtLeast || waits[0] > tt.wantAtLeast+3*time.Second {
				t.Errorf("waits = %v, want one of at least %v", waits, tt.wantAtLeast)
			}
		})
	}
}

// TestClientRetriesInternalError: a 500 is retried with backoff like a 503, and the call
// succeeds with the answer of the attempt that got through.
func TestClientRetriesInternalError(t *testing.T) {
	internal := reply{status: 500, code: "internal", msg: "local state not saved: no space left on device"}
	srv := newFakeServer(t, keysFor("pw"), internal, internal, reply{status: 200})
	var waits []time.Duration
	c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte("pw")), Timeout: 5 * time.Second}
	fast(c)
	c.sleep = func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}
	res, err := c.Register(context.Background(), "web", Request{Name: "web-1", Port: 9000})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	want := Result{Service: "web", Member: model.Member{Name: "web-1", Address: "127.0.0.1", Port: 9000, Weight: 100}, Applied: true, Attempts: 3}
	if res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}
	if got, want := len(srv.Calls()), 3; got != want {
		t.Errorf("server got %d calls, want %d", got, want)
	}
	if got, want := len(waits), 2; got != want {
		t.Errorf("waits = %v, want %d (one before each retry)", waits, want)
	}
}

func TestClientResignsRetries(t *testing.T) {
	notApplied := reply{status: 503, code: "not_applied", msg: "not yet"}
	srv := newFakeServer(t, keysFor("pw"), notApplied, notApplied, reply{status: 200})
	c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte("pw")), Timeout: 5 * time.Second}
	fast(c)
	if _, err := c.Register(context.Background(), "web", Request{Name: "web-1"}); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	seen := map[string]bool{}
	for _, cl := range srv.Calls() {
		a := cl.header.Get("Authorization")
		if seen[a] {
			t.Errorf("Authorization %q sent twice", a)
		}
		seen[a] = true
	}
	if len(seen) != 3 || srv.Refused() != 0 {
		t.Errorf("server accepted %d distinct signatures and refused %d, want 3 and 0", len(seen), srv.Refused())
	}
}

func TestClientUnreachable(t *testing.T) {
	var logs bytes.Buffer
	c := &Client{Server: closedAddr(t), Key: []byte("k"), Timeout: 300 * time.Millisecond, Logger: newTestLogger(&logs)}
	fast(c)
	_, err := c.Register(context.Background(), "web", Request{})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindUnreachable || ExitCode(err) != ExitUnreachable {
		t.Fatalf("Register() = %v, want unreachable", err)
	}
	if e.Attempts < 2 || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error = %v after %d attempts, want connection refused after retries", err, e.Attempts)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry logged: %q", logs.String())
	}
}

func TestClientCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{Server: closedAddr(t), Key: []byte("k"), Timeout: time.Minute}
	fast(c)
	var once sync.Once
	c.sleep = func(ctx context.Context, d time.Duration) error {
		once.Do(cancel)
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := c.Register(ctx, "web", Request{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Register() = %v, want context.Canceled", err)
	}
}

// TestReplayRefused captures a signed request that the server accepted and sends it again,
// byte for byte: the server must refuse it.
func TestReplayRefused(t *testing.T) {
	srv := newFakeServer(t, keysFor("pw"))
	c := &Client{Server: srv.URL, Key: auth.DeriveKey([]byte("pw"))}
	if _, err := c.Register(context.Background(), "web", Request{Name: "web-1", Port: 8080}); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	captured := srv.Calls()[0]
	resend := func(body string) int {
		req, err := http.NewRequest(captured.method, srv.URL+captured.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"Authorization", auth.HeaderContentSHA256, "Content-Type"} {
			req.Header.Set(h, captured.header.Get(h))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := resend(captured.body); got != http.StatusUnauthorized {
		t.Errorf("replayed request: status %d, want 401", got)
	}
	if got := resend(strings.Replace(captured.body, "8080", "9090", 1)); got != http.StatusUnauthorized {
		t.Errorf("replayed request with another body: status %d, want 401", got)
	}
	if n := len(srv.Calls()); n != 1 {
		t.Errorf("server accepted %d calls, want 1", n)
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
	for attempt := 1; attempt <= 12; attempt++ {
		full := min(100*time.Millisecond<<(attempt-1), time.Second)
		for range 20 {
			if d := c.backoff(attempt); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"99999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"tomorrow", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Kind: KindUsage, Message: "no server"}, "no server"},
		{&Error{Kind: KindAuth, Status: 401, Code: "unauthenticated", Message: "request signature is missing, stale or invalid", Attempts: 1},
			"server refused the credentials (401 unauthenticated): request signature is missing, stale or invalid"},
		{&Error{Kind: KindNotApplied, Status: 503, Code: "not_applied", Message: "change saved but not applied", Attempts: 4},
			"change accepted but not applied (503 not_applied, 4 attempts): change saved but not applied"},
		{&Error{Kind: KindUnreachable, Err: errors.New("dial tcp: refused"), Attempts: 3},
			"cannot reach the server (3 attempts): dial tcp: refused"},
		{&Error{Kind: KindUnreachable, Status: 502, Message: "bad gateway"}, "server unavailable (502 Bad Gateway): bad gateway"},
		{&Error{Kind: KindRefused, Status: 404, Code: "not_found", Message: "service web is not defined"},
			"server refused the request (404 not_found): service web is not defined"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if got := ExitCode(errors.New("x")); got != ExitRefused {
		t.Errorf("ExitCode(plain error) = %d, want %d", got, ExitRefused)
	}
	if got := ExitCode(nil); got != ExitOK {
		t.Errorf("ExitCode(nil) = %d, want 0", got)
	}
}

// TestClientSlowServer: a server that answers after the timeout yields an unreachable error
// that says so.
func TestClientSlowServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	c := &Client{Server: srv.URL, Key: []byte("k"), Timeout: 100 * time.Millisecond}
	_, err := c.Register(context.Background(), "web", Request{})
	if ExitCode(err) != ExitUnreachable || !strings.Contains(err.Error(), "no answer from 127.0.0.1:") {
		t.Errorf("Register() = %v (exit %d), want unreachable: no answer", err, ExitCode(err))
	}
}

package register

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/internal/model"
)

// reply is one scripted answer of the fake server.
type reply struct {
	status     int
	code, msg  string
	retryAfter string
	applied    *bool  // for 2xx: the "applied" field; nil = true
	raw        string // a non-JSON body instead of the API's
}

// call is one authenticated request the fake server received.
type call struct {
	method, path, query, body string
	header                    http.Header
}

// fakeServer implements the register/unregister subset of the API of docs/CONTRACTS.md with
// a real auth.Verifier (replay protection included) and scripted answers: the n-th
// authenticated call gets replies[n], the last reply repeating; no replies means 200.
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	replies []reply
	calls   []call
	refused int
}

func newFakeServer(t *testing.T, keys auth.StaticKeys, replies ...reply) *fakeServer {
	t.Helper()
	fs := &fakeServer{replies: replies}
	v := auth.New(keys)
	handle := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "read body: " + err.Error(), "code": "bad_request"})
			return
		}
		if _, err := v.Verify(r, body); err != nil {
			fs.mu.Lock()
			fs.refused++
			fs.mu.Unlock()
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": auth.ErrUnauthenticated.Error(), "code": "unauthenticated"})
			return
		}
		fs.mu.Lock()
		n := len(fs.calls)
		fs.calls = append(fs.calls, call{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, body: string(body), header: r.Header.Clone()})
		rep := reply{status: http.StatusOK}
		if len(fs.replies) > 0 {
			rep = fs.replies[min(n, len(fs.replies)-1)]
		}
		fs.mu.Unlock()

		if rep.retryAfter != "" {
			w.Header().Set("Retry-After", rep.retryAfter)
		}
		if rep.raw != "" {
			w.WriteHeader(rep.status)
			io.WriteString(w, rep.raw)
			return
		}
		resp := map[string]any{"service": r.PathValue("service"), "member": memberOf(r, body)}
		if rep.status >= 200 && rep.status < 300 {
			resp["applied"] = rep.applied == nil || *rep.applied
		} else {
			resp["error"], resp["code"], resp["applied"] = rep.msg, rep.code, false
		}
		writeJSON(w, rep.status, resp)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/services/{service}/members/{member}", handle)
	mux.HandleFunc("POST /v1/services/{service}/members", handle)
	mux.HandleFunc("DELETE /v1/services/{service}/members/{member}", handle)
	mux.HandleFunc("DELETE /v1/services/{service}/members", handle)
	mux.HandleFunc("PUT /v1/instances/{id}", handle)
	fs.Server = httptest.NewServer(mux)
	t.Cleanup(fs.Close)
	return fs
}

// memberOf fills in the server's defaults: source address, port 8080, weight 100.
func memberOf(r *http.Request, body []byte) model.Member {
	var b memberBody
	_ = json.Unmarshal(body, &b)
	m := model.Member{Name: r.PathValue("member"), Address: b.Address, Port: b.Port, Weight: model.DefaultWeight, Zone: b.Zone}
	if m.Name == "" {
		m.Name = b.Name
	}
	if m.Address == "" {
		m.Address, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	if m.Port == 0 {
		m.Port = 8080
	}
	if b.Weight != nil {
		m.Weight = *b.Weight
	}
	if m.Name == "" {
		m.Name = model.DefaultName(m.Address, m.Port)
	}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (fs *fakeServer) Calls() []call {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]call(nil), fs.calls...)
}

func (fs *fakeServer) Refused() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.refused
}

// hostPort is the server's address without a scheme, the usual CLB_SERVER form.
func (fs *fakeServer) hostPort() string {
	return strings.TrimPrefix(fs.URL, "http://")
}

// keysFor returns the server keys for the 2010 shared password.
func keysFor(password string) auth.StaticKeys {
	return auth.StaticKeys{auth.DefaultKeyID: auth.DeriveKey([]byte(password))}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// fast makes retries quick for tests.
func fast(c *Client) {
	c.RetryMin, c.RetryMax = time.Millisecond, 10*time.Millisecond
}

func ptr[T any](v T) *T { return &v }

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

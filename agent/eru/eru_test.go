package eru

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clb/agent/config"
	"clb/internal/gateway"
	"clb/internal/model"
)

func TestParseServer(t *testing.T) {
	for _, tc := range []struct {
		key, opts string
		want      model.Member
		wantErr   string
	}{
		{key: "127.0.0.1:8088", want: model.Member{Name: "127.0.0.1:8088", Address: "127.0.0.1", Port: 8088, Weight: 1}},
		{key: "127.0.0.1:8089", opts: "max_fails=2 weight=10", want: model.Member{Name: "127.0.0.1:8089", Address: "127.0.0.1", Port: 8089, Weight: 10}},
		{key: "localhost:8089", opts: "  weight=3\tfail_timeout=30s  ", want: model.Member{Name: "localhost:8089", Address: "localhost", Port: 8089, Weight: 3}},
		{key: "10.0.0.1:80", opts: "weight=5 down", want: model.Member{Name: "10.0.0.1:80", Address: "10.0.0.1", Port: 80, Weight: 0}},
		{key: "[fd00::1]:80", opts: "fail_timeout=1m30s max_fails=0", want: model.Member{Name: "ip6-fd00--1:80", Address: "fd00::1", Port: 80, Weight: 1}},
		{key: "10.0.0.1:80", opts: "fail_timeout=10", want: model.Member{Name: "10.0.0.1:80", Address: "10.0.0.1", Port: 80, Weight: 1}},

		{key: "10.0.0.1", wantErr: "want ADDRESS:PORT"},
		{key: "10.0.0.1:0", wantErr: "port 0"},
		{key: "10.0.0.1:http", wantErr: `port "http"`},
		{key: "bad_host:80", wantErr: "not an IP address or an RFC 1123 host name"},
		{key: "0.0.0.0:80", wantErr: "unspecified"},
		{key: "10.0.0.1:80", opts: "weight=0", wantErr: "want weight=1..256"},
		{key: "10.0.0.1:80", opts: "weight=257", wantErr: "want weight=1..256"},
		{key: "10.0.0.1:80", opts: "weight=x", wantErr: "want weight=1..256"},
		{key: "10.0.0.1:80", opts: "weight=1 weight=2", wantErr: "weight given twice"},
		{key: "10.0.0.1:80", opts: "max_fails=-1", wantErr: "max_fails=N"},
		{key: "10.0.0.1:80", opts: "fail_timeout=soon", wantErr: "fail_timeout=TIME"},
		{key: "10.0.0.1:80", opts: "backup", wantErr: "backup servers are not supported"},
		{key: "10.0.0.1:80", opts: "max_conns=10", wantErr: `option "max_conns=10": unknown`},
		{key: "10.0.0.1:80", opts: "down=1", wantErr: "unknown"},
		{key: "10.0.0.1:80", opts: "weight", wantErr: "unknown"},
	} {
		got, err := ParseServer(tc.key, tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseServer(%q, %q) = %v, want an error with %q", tc.key, tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseServer(%q, %q) = %+v, %v; want %+v", tc.key, tc.opts, got, err, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	gws := map[string]gateway.Gateway{
		"web":    {Bind: ":80"},
		"alt":    {Bind: "127.0.0.1:8080"},
		"alt2":   {Bind: "127.0.0.2:8080"},
		"secure": {Bind: ":443", Protocol: "https"},
	}
	for _, tc := range []struct {
		name    string
		cfg     config.Config
		key     string
		want    domainKey
		wantErr string
		status  int
	}{
		{name: "port names the gateway", cfg: config.Config{Gateways: gws}, key: "WWW.Example.com:443", want: domainKey{"secure", "www.example.com"}},
		{name: "no port: eru_gateway", cfg: config.Config{Gateways: gws, EruGateway: "web"}, key: "a.example", want: domainKey{"web", "a.example"}},
		{name: "IP host", cfg: config.Config{Gateways: gws, EruGateway: "web"}, key: "127.0.0.1", want: domainKey{"web", "127.0.0.1"}},
		{name: "no port: the only gateway", cfg: config.Config{Gateways: map[string]gateway.Gateway{"web": {Bind: ":80"}}}, key: "a.example.", want: domainKey{"web", "a.example"}},
		{name: "two on the port: eru_gateway decides", cfg: config.Config{Gateways: gws, EruGateway: "alt2"}, key: "a.example:8080", want: domainKey{"alt2", "a.example"}},

		{name: "two on the port", cfg: config.Config{Gateways: gws}, key: "a.example:8080", wantErr: "gateways alt, alt2 all listen on port 8080", status: 400},
		{name: "no gateway on the port", cfg: config.Config{Gateways: gws}, key: "a.example:9999", wantErr: "no gateway listens on port 9999", status: 404},
		{name: "no port, several gateways", cfg: config.Config{Gateways: gws}, key: "a.example", wantErr: "4 gateways and no eru_gateway", status: 400},
		{name: "eru_gateway not defined", cfg: config.Config{Gateways: gws, EruGateway: "nope"}, key: "a.example", wantErr: "eru_gateway nope is not defined", status: 404},
		{name: "no gateway at all", cfg: config.Config{}, key: "a.example", wantErr: "no gateway is defined", status: 404},
		{name: "bad host", cfg: config.Config{Gateways: gws}, key: "a b:80", wantErr: "want a host name or an IP address", status: 400},
		{name: "bad port", cfg: config.Config{Gateways: gws}, key: "a.example:99999", wantErr: "want 1-65535", status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolve(&tc.cfg, tc.key)
			if tc.wantErr != "" {
				e, ok := err.(*Error)
				if !ok || !strings.Contains(e.Msg, tc.wantErr) || e.Status != tc.status {
					t.Fatalf("resolve(%q) = %v, want %d %q", tc.key, err, tc.status, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolve(%q) = %v, %v; want %v", tc.key, got, err, tc.want)
			}
			if k := keyOf(&tc.cfg, got.gateway, got.host); !strings.EqualFold(strings.TrimSuffix(tc.key, "."), k) && !strings.HasPrefix(k, got.host) {
				t.Errorf("keyOf = %q for %q", k, tc.key)
			}
		})
	}
}

// TestRefusedBeforeTheCore checks what the adapter refuses on its own, before any call to
// the core (which is nil here: a call would panic): who may call, methods, bodies, names
// and options, each with a status and {"msg"}.
func TestRefusedBeforeTheCore(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		EruAllow:   []string{"10.1.0.0/16", "192.0.2.7"},
		Gateways:   map[string]gateway.Gateway{"web": {Bind: ":80"}},
		Services:   map[string]config.Service{"db": {Listeners: []config.Listener{{Port: 5432, Protocol: "tcp"}}}},
		MaxMembers: 2,
	}
	withToken := *cfg
	withToken.EruTokenFile = token
	for _, tc := range []struct {
		name, method, path, body, remote, auth string
		cfg                                    *config.Config
		status                                 int
		msg                                    string
	}{
		{name: "foreign address", method: "GET", path: "/__erulb__/domain", remote: "203.0.113.9:5000", status: 403, msg: "203.0.113.9 may not call the Eru adapter"},
		{name: "outside the allowed networks", method: "GET", path: "/__erulb__/domain", remote: "10.2.0.1:5000", status: 403, msg: "may not call"},
		{name: "token missing", cfg: &withToken, method: "GET", path: "/__erulb__/domain", status: 401, msg: "missing or wrong bearer token"},
		{name: "token wrong", cfg: &withToken, method: "GET", path: "/__erulb__/domain", auth: "Bearer nope", status: 401, msg: "missing or wrong bearer token"},
		{name: "unknown path", method: "GET", path: "/__erulb__/nope", status: 404, msg: "no such endpoint"},
		{name: "method", method: "POST", path: "/__erulb__/domain", body: "{}", status: 405, msg: "method POST: /__erulb__/domain takes DELETE, GET, PUT"},
		{name: "dump takes PUT only", method: "GET", path: "/__erulb__/dump", status: 405, msg: "takes PUT"},
		{name: "empty body", method: "PUT", path: "/__erulb__/domain", status: 400, msg: "empty body"},
		{name: "bad JSON", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {`, status: 400, msg: "body:"},
		{name: "unknown field", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "r1", "rules": {}, "x": 1}}`, status: 400, msg: `unknown field "x"`},
		{name: "no domain", method: "PUT", path: "/__erulb__/domain", body: `{}`, status: 400, msg: "no domain in the body"},
		{name: "same domain twice", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}, "A.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}}`, status: 400, msg: "are the same domain"},
		{name: "missing init", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}}`, status: 400, msg: "init is missing"},
		{name: "loop", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "a", "rules": {"a": {"type": "ua", "args": {"pattern": "x", "succ": "b"}}, "b": {"type": "ua", "args": {"pattern": "y", "succ": "a"}}}}}`, status: 400, msg: "loop"},
		{name: "literal backend", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "127.0.0.1:7070"}}}}}`, status: 400, msg: "literal host:port backends are not served"},
		{name: "statics headers", method: "PUT", path: "/__erulb__/domain", body: `{"a.example": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up", "path": "/tmp/statics"}}}}}`, status: 400, msg: "a.example"},
		{name: "domain on no gateway", method: "PUT", path: "/__erulb__/domain", body: `{"a.example:9999": {"init": "b", "rules": {"b": {"type": "backend", "args": {"servername": "up"}}}}}`, status: 404, msg: "no gateway listens on port 9999"},
		{name: "delete domains: not a list", method: "DELETE", path: "/__erulb__/domain", body: `{"a.example": 1}`, status: 400, msg: "body:"},
		{name: "no upstream", method: "PUT", path: "/__erulb__/upstream", body: `{}`, status: 400, msg: "no upstream in the body"},
		{name: "upstream name", method: "PUT", path: "/__erulb__/upstream", body: `{"up/1": {}}`, status: 400, msg: `upstream "up/1"`},
		{name: "upstream twice", method: "PUT", path: "/__erulb__/upstream", body: `{"Up": {}, "up": {}}`, status: 400, msg: "are the same service up"},
		{name: "tcp service", method: "PUT", path: "/__erulb__/upstream", body: `{"db": {"10.0.0.1:5432": ""}}`, status: 409, msg: "only tcp listeners"},
		{name: "bad option", method: "PUT", path: "/__erulb__/upstream", body: `{"up": {"10.0.0.1:80": "slow_start=10s"}}`, status: 400, msg: `upstream up: server 10.0.0.1:80: option "slow_start=10s": unknown`},
		{name: "same member twice", method: "PUT", path: "/__erulb__/upstream", body: `{"up": {"[::ffff:10.0.0.1]:80": "", "10.0.0.1:80": ""}}`, status: 400, msg: "are the same member 10.0.0.1:80"},
		{name: "too many servers", method: "PUT", path: "/__erulb__/upstream", body: `{"up": {"10.0.0.1:80": "", "10.0.0.2:80": "", "10.0.0.3:80": ""}}`, status: 400, msg: "more than max_members 2"},
		{name: "upstream servers not an object", method: "PUT", path: "/__erulb__/upstream", body: `{"up": ["10.0.0.1:80"]}`, status: 400, msg: "body:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = tc.cfg
			}
			s := New(Deps{Config: func() *config.Config { return c }})
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.RemoteAddr = "127.0.0.1:4000"
			if tc.remote != "" {
				req.RemoteAddr = tc.remote
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			var got struct{ Msg string }
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != tc.status || !strings.Contains(got.Msg, tc.msg) {
				t.Errorf("%s %s = %d %q, want %d with %q", tc.method, tc.path, w.Code, got.Msg, tc.status, tc.msg)
			}
		})
	}
	// Allowed callers reach the handlers: an allowed network, the token.
	for _, tc := range []struct {
		remote, auth string
		cfg          *config.Config
	}{{remote: "10.1.2.3:1"}, {remote: "192.0.2.7:1"}, {remote: "[::1]:1"}, {remote: "127.0.0.1:1", auth: "Bearer t0ken", cfg: &withToken}} {
		c := cfg
		if tc.cfg != nil {
			c = tc.cfg
		}
		s := New(Deps{Config: func() *config.Config { return c }})
		req := httptest.NewRequest("GET", "/__erulb__/domain", nil)
		w := httptest.NewRecorder()
		req.RemoteAddr = tc.remote
		req.Header.Set("Authorization", tc.auth)
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "{}" {
			t.Errorf("GET from %s: %d %s, want 200 {}", tc.remote, w.Code, w.Body)
		}
	}
}

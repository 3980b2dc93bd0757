package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"clb/agent/api"
	"clb/internal/auth"
)

// badCase is one refused call against the running daemon.
type badCase struct {
	name   string
	method string
	path   string
	body   string
	key    string // key id to sign with; "" sends the request unsigned
	// build replaces the default request (signed with key) when set.
	build func(s *secureAgent, c badCase) *http.Request
	// from is the local address to send from (rate limiting is per source); "" for 127.0.0.1.
	from string
	// before runs first (to exhaust a source's failure budget, say).
	before func(s *secureAgent)

	status int
	code   string
	errHas string
}

const memberPath = "/v1/services/web/members/"

// signedAt signs a request at a given time.
func signedAt(at time.Duration) func(s *secureAgent, c badCase) *http.Request {
	return func(s *secureAgent, c badCase) *http.Request {
		req := s.request(c.method, c.path, "", c.body)
		if err := auth.Sign(req, "default", auth.DeriveKey([]byte(secPassword)), []byte(c.body), time.Now().Add(at)); err != nil {
			s.t.Fatal(err)
		}
		return req
	}
}

// tampered signs the request with key "default" and then changes it.
func tampered(change func(r *http.Request)) func(s *secureAgent, c badCase) *http.Request {
	return func(s *secureAgent, c badCase) *http.Request {
		req := s.request(c.method, c.path, "default", c.body)
		change(req)
		return req
	}
}

func body(s string) func(r *http.Request) {
	return func(r *http.Request) {
		r.Body = io.NopCloser(strings.NewReader(s))
		r.ContentLength = int64(len(s))
	}
}

func badCases() []badCase {
	const u = "unauthenticated"
	const authMsg = "signature is missing, stale or invalid"
	reg := func(name, body, errHas string) badCase {
		return badCase{name: name, method: "PUT", path: memberPath + "x", body: body, key: "default", status: 400, code: "bad_request", errHas: errHas}
	}
	post := func(name, body, errHas string) badCase {
		return badCase{name: name, method: "POST", path: "/v1/services/web/members", body: body, key: "default", status: 400, code: "bad_request", errHas: errHas}
	}
	path := func(name, p, errHas string) badCase {
		return badCase{name: name, method: "PUT", path: p, key: "default", status: 400, code: "bad_request", errHas: errHas}
	}
	return []badCase{
		// Authentication: one message for every cause.
		{name: "unsigned", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg},
		{name: "wrong password", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: func(s *secureAgent, c badCase) *http.Request {
				req := s.request(c.method, c.path, "", c.body)
				auth.Sign(req, "default", auth.DeriveKey([]byte("wrong password")), nil, time.Now())
				return req
			}},
		{name: "unknown key id", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: func(s *secureAgent, c badCase) *http.Request {
				req := s.request(c.method, c.path, "", c.body)
				auth.Sign(req, "nobody", auth.DeriveKey([]byte(secPassword)), nil, time.Now())
				return req
			}},
		{name: "garbled authorization", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) {
				r.Header.Set("Authorization", "CLB1-HMAC-SHA256 key=default, ts=1, nonce=zz, sig=00")
			})},
		{name: "basic auth instead", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.Header.Set("Authorization", "Basic ZGVmYXVsdDpwdw==") })},
		{name: "garbled signature", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) {
				h := r.Header.Get("Authorization")
				r.Header.Set("Authorization", h[:len(h)-64]+strings.Repeat("0", 64))
			})},
		{name: "signature not hex", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) {
				h := r.Header.Get("Authorization")
				r.Header.Set("Authorization", h[:len(h)-64]+strings.Repeat("g", 64))
			})},
		{name: "two authorization headers", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.Header.Add("Authorization", r.Header.Get("Authorization")) })},
		{name: "missing content hash", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.Header.Del(auth.HeaderContentSHA256) })},
		{name: "body swapped after signing", method: "PUT", path: memberPath + "x", body: `{"port":1}`, status: 401, code: u, errHas: authMsg,
			build: tampered(body(`{"port":2}`))},
		{name: "query added after signing", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.URL.RawQuery = "wait=false" })},
		{name: "path changed after signing", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.URL.Path = memberPath + "y" })},
		{name: "method changed after signing", method: "PUT", path: memberPath + "good", status: 401, code: u, errHas: authMsg,
			build: tampered(func(r *http.Request) { r.Method = "DELETE" })},
		{name: "expired timestamp", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg, build: signedAt(-6 * time.Minute)},
		{name: "future timestamp", method: "PUT", path: memberPath + "x", status: 401, code: u, errHas: authMsg, build: signedAt(6 * time.Minute)},
		{name: "replayed nonce", method: "DELETE", path: memberPath + "ghost", status: 401, code: u, errHas: authMsg,
			build: func(s *secureAgent, c badCase) *http.Request {
				req := s.request(c.method, c.path, "default", c.body)
				first := req.Clone(req.Context())
				if resp, _ := s.do(first); resp.StatusCode != http.StatusNotFound {
					s.t.Fatalf("first copy = %d, want 404", resp.StatusCode)
				}
				return req
			}},
		{name: "rate limited source", method: "PUT", path: memberPath + "x", key: "default", from: "127.0.0.9", status: 429, code: "rate_limited", errHas: "too many failed authentications from 127.0.0.9",
			before: func(s *secureAgent) {
				for range rateBurst {
					req := s.request("PUT", memberPath+"x", "", "")
					if resp, _ := s.doFrom(req, "127.0.0.9"); resp.StatusCode != http.StatusUnauthorized {
						s.t.Fatalf("unsigned call = %d, want 401", resp.StatusCode)
					}
				}
			}},

		// Scope.
		{name: "register key outside its services", method: "PUT", path: "/v1/services/db/members/x", key: "web-deploy", status: 403, code: "forbidden", errHas: `may not use service "db"`},
		{name: "register key unregisters outside", method: "DELETE", path: "/v1/services/db/members/x", key: "web-deploy", status: 403, code: "forbidden", errHas: `key "web-deploy" has scope register:web`},
		{name: "glob key outside its glob", method: "POST", path: "/v1/services/web/members", key: "api-deploy", status: 403, code: "forbidden", errHas: `may not use service "web"`},
		{name: "register key reads another service", method: "GET", path: "/v1/services/db", key: "web-deploy", status: 403, code: "forbidden", errHas: "db"},
		{name: "register key defines a service", method: "PUT", path: "/v1/services/web", body: `{"listeners":[{"port":1}]}`, key: "web-deploy", status: 403, code: "forbidden", errHas: "needs a key with admin scope"},
		{name: "shared password removes a service", method: "DELETE", path: "/v1/services/web", key: "default", status: 403, code: "forbidden", errHas: "needs a key with admin scope"},
		{name: "register key disables a zone", method: "POST", path: "/v1/services/web/zones/eu/disable", key: "web-deploy", status: 403, code: "forbidden", errHas: "needs a key with admin scope"},
		{name: "register key on unknown service", method: "PUT", path: "/v1/services/nope/members/x", key: "web-deploy", status: 403, code: "forbidden", errHas: `"nope"`},

		// Body: malformed, wrong types, unknown fields, sizes.
		reg("malformed json", `{"port":`, "decode request body"),
		reg("not json", `port=80`, "decode request body"),
		reg("json array", `[{"port":80}]`, "cannot unmarshal array"),
		reg("port as string", `{"port":"80"}`, "port"),
		reg("weight as string", `{"weight":"7"}`, "weight"),
		reg("address as number", `{"address":1234}`, "address"),
		reg("zone as object", `{"zone":{"a":1}}`, "zone"),
		reg("fractional weight", `{"weight":1.5}`, "weight"),
		reg("huge port", `{"port":1e30}`, "port"),
		reg("unknown field", `{"prot":80}`, `unknown field "prot"`),
		reg("two json values", `{} {}`, "more than one JSON value"),
		reg("port too high", `{"port":65536}`, "port 65536"),
		reg("port negative", `{"port":-1}`, "port -1"),
		reg("weight too high", `{"weight":257}`, "weight 257"),
		reg("weight negative", `{"weight":-1}`, "weight -1"),
		{name: "oversize body", method: "PUT", path: memberPath + "x", body: `{"zone":"` + strings.Repeat("a", api.MaxBody) + `"}`, key: "default", status: 413, code: "too_large", errHas: "larger than 65536 bytes"},

		// Injection: newline, '#', space in every field.
		reg("address newline", `{"address":"1.2.3.4\n    server evil 6.6.6.6:80"}`, "address"),
		reg("address hash", `{"address":"1.2.3.4#x"}`, "address"),
		reg("address space", `{"address":"1.2.3.4 backup"}`, "address"),
		reg("address with port", `{"address":"1.2.3.4:80"}`, "address"),
		reg("address ipv6 zone", `{"address":"fe80::1%eth0"}`, "IPv6 zones"),
		reg("address unspecified", `{"address":"0.0.0.0"}`, "unspecified"),
		reg("address underscore host", `{"address":"bad_host.example"}`, "RFC 1123"),
		reg("address fullwidth digits", `{"address":"１.2.3.4"}`, "address"),
		reg("address nul", `{"address":"1.2.3.4\u0000"}`, "address"),
		post("name newline", `{"name":"a\nbackend evil"}`, "member name"),
		post("name hash", `{"name":"a#b"}`, "member name"),
		post("name space", `{"name":"a b"}`, "member name"),
		post("name traversal", `{"name":"../../etc/passwd"}`, "member name"),
		reg("zone newline", `{"zone":"a\nb"}`, "zone"),
		reg("zone hash", `{"zone":"a#b"}`, "zone"),
		reg("zone space", `{"zone":"a b"}`, "zone"),
		reg("zone uppercase", `{"zone":"EU"}`, "zone"),
		reg("zone too long", `{"zone":"`+strings.Repeat("z", 65)+`"}`, "zone"),
		reg("name differs from path", `{"name":"y"}`, "body names member"),

		// Names in the path: newline, '#', space, traversal, length.
		path("path member newline", memberPath+"a%0Ab", "member name"),
		path("path member space", memberPath+"a%20b", "member name"),
		path("path member hash", memberPath+"a%23b", "member name"),
		path("path member traversal", memberPath+"..%2F..%2Fetc%2Fpasswd", "member name"),
		path("path member too long", memberPath+strings.Repeat("m", 129), "member name"),
		path("path service traversal", "/v1/services/..%2Fetc/members/x", "service name"),
		path("path service uppercase", "/v1/services/Web/members/x", "service name"),
		path("path service newline", "/v1/services/web%0A/members/x", "service name"),
		{name: "path dot segments", method: "PUT", path: "/v1/services/web/members/../../../etc", key: "default", status: 404, code: "not_found", errHas: "no such endpoint"},

		// Unknown things, methods.
		{name: "unknown service", method: "PUT", path: "/v1/services/nope/members/x", key: "default", status: 404, code: "not_found", errHas: `unknown service "nope"`},
		{name: "unregister unknown member", method: "DELETE", path: memberPath + "ghost", key: "default", status: 404, code: "not_found", errHas: "not registered"},
		{name: "unregister self unknown", method: "DELETE", path: "/v1/services/web/members", body: `{"port":1}`, key: "default", status: 404, code: "not_found", errHas: "no member with address 127.0.0.1 and port 1"},
		{name: "unregister self bad address", method: "DELETE", path: "/v1/services/web/members", body: `{"address":"1.2.3.4\nx"}`, key: "default", status: 400, code: "bad_request", errHas: "address"},
		{name: "method PATCH", method: "PATCH", path: memberPath + "x", key: "default", status: 405, code: "method_not_allowed", errHas: "PATCH"},
		{name: "method POST on a member", method: "POST", path: memberPath + "x", key: "default", status: 405, code: "method_not_allowed", errHas: "allowed: "},
		{name: "method TRACE", method: "TRACE", path: "/v1/status", key: "default", status: 405, code: "method_not_allowed", errHas: "TRACE"},
		{name: "no such endpoint", method: "GET", path: "/v2/services", key: "default", status: 404, code: "not_found", errHas: "no such endpoint"},
		// Unsigned, the same calls learn nothing of the routes.
		{name: "method TRACE unsigned", method: "TRACE", path: "/v1/status", status: 401, code: u, errHas: authMsg},
		{name: "no such endpoint unsigned", method: "GET", path: "/v2/services", status: 401, code: u, errHas: authMsg},
		{name: "method not allowed unsigned", method: "PATCH", path: memberPath + "x", status: 401, code: u, errHas: authMsg},

		// Too many members (the service is at max_members).
		{name: "member over the cap", method: "PUT", path: memberPath + "one-more", body: `{"address":"127.0.0.1"}`, key: "default", status: 409, code: "conflict", errHas: "already has 3 members"},
	}
}

const rateBurst = 40

// doFrom sends req from a given local address.
func (s *secureAgent) doFrom(req *http.Request, from string) (*http.Response, map[string]any) {
	s.t.Helper()
	if from == "" {
		return s.do(req)
	}
	saved := s.client
	defer func() { s.client = saved }()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	s.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
	return s.do(req)
}

// TestBadInput sends every bad call of badCases to a running clbd with a real haproxy. Each
// must be refused with its status and a message naming the problem, leave state.json and
// haproxy.cfg byte-identical, and leave traffic flowing to the registered member.
func TestBadInput(t *testing.T) {
	s := newSecureAgent(t, secureOpts{maxMembers: 3, burst: rateBurst})
	// Three members (the cap), all on the one real backend so that traffic is deterministic.
	for _, name := range []string{"good", "good2", "good3"} {
		body := fmt.Sprintf(`{"address":"127.0.0.1","port":%d}`, s.b1Port)
		if st, out := s.call("PUT", memberPath+name, "default", body); st != http.StatusOK {
			t.Fatalf("register %s = %d %v", name, st, out)
		}
	}
	if got := s.served(3); got["b1"] != 3 {
		t.Fatalf("before the bad calls, web served %v, want b1 only", got)
	}
	before := s.files()
	cases := badCases()
	if len(cases) < 50 {
		t.Errorf("only %d bad-input cases, want at least 50", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("case %q listed twice", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			s.t = t
			defer func() { s.t = nil }()
			if c.before != nil {
				c.before(s)
			}
			var req *http.Request
			if c.build != nil {
				req = c.build(s, c)
			} else {
				req = s.request(c.method, c.path, c.key, c.body)
			}
			resp, out := s.doFrom(req, c.from)
			if resp.StatusCode != c.status || out["code"] != c.code {
				t.Errorf("got %d %v, want %d %s", resp.StatusCode, out, c.status, c.code)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, c.errHas) {
				t.Errorf("error %q does not name the problem (want %q)", msg, c.errHas)
			}
			if c.status == http.StatusTooManyRequests {
				if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
					t.Errorf("Retry-After = %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
				}
			}
			if got := s.files(); got != before {
				t.Errorf("state or haproxy.cfg changed:\n%s\nwant\n%s", got, before)
			}
			if got := s.served(3); got["b1"] != 3 {
				t.Errorf("after the call, web served %v, want b1 only", got)
			}
		})
	}
	s.t = t

	// The refusals were counted, and no secret reached the log or an answer.
	if n := s.a.AuthFailures(); n < 15+rateBurst {
		t.Errorf("AuthFailures() = %d, want at least %d", n, 15+rateBurst)
	}
	if n := s.a.AuthRateLimited(); n != 1 {
		t.Errorf("AuthRateLimited() = %d, want 1", n)
	}
	_, status := s.call("GET", "/v1/status", "ops", "")
	statusText := fmt.Sprint(status)
	logs := s.logs.String()
	for id, secret := range secrets {
		for what, text := range map[string]string{"log": logs, "/v1/status": statusText} {
			if strings.Contains(text, secret) || strings.Contains(text, fmt.Sprintf("%x", auth.DeriveKey([]byte(secret)))) {
				t.Errorf("the %s shows the secret of key %s", what, id)
			}
		}
	}
	if !strings.Contains(logs, "authentication refused") || !strings.Contains(logs, "addr=127.0.0.9:") {
		t.Errorf("failed authentications are not logged with their source")
	}
}

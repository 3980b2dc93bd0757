package awsapi

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/ratelimit"
	"clb/internal/sigv4"
)

// The refusals that come before any action touches the core: authentication, scope,
// dispatch. Each answers an ErrorResponse in the ELB namespace with AWS's code and status and
// a request id in the body and the header.

const (
	adminSecret = "admin-secret-0123456789"
	regSecret   = "register-secret-0123456"
)

func testServer(burst int) *Server {
	cfg := config.Defaults()
	keys := auth.NewKeyring(map[string]auth.Key{
		"ops": {Signing: auth.DeriveKey([]byte(adminSecret)), Secret: []byte(adminSecret), Scope: auth.ScopeAdmin},
		"reg": {Signing: auth.DeriveKey([]byte(regSecret)), Secret: []byte(regSecret), Scope: auth.Scope{Services: []string{"web*"}}},
	})
	return New(Deps{Config: func() *config.Config { return &cfg }, Keys: keys, Limiter: ratelimit.New(burst, time.Hour, 0, nil)})
}

type errorDoc struct {
	XMLName xml.Name `xml:"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/ ErrorResponse"`
	Error   struct {
		Type, Code, Message string
	}
	RequestID string `xml:"RequestId"`
}

func call(t *testing.T, s *Server, form url.Values, keyID, secret string) (int, errorDoc, http.Header) {
	t.Helper()
	body := form.Encode()
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8091/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if keyID != "" {
		sigv4.Sign(r, []byte(body), keyID, []byte(secret), "us-east-1", "elasticloadbalancing", time.Now())
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	raw, _ := io.ReadAll(w.Result().Body)
	var doc errorDoc
	if w.Code != http.StatusOK {
		if err := xml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("error answer is not an ELB ErrorResponse: %v\n%s", err, raw)
		}
		if doc.RequestID == "" || doc.RequestID != w.Header().Get("x-amzn-RequestId") {
			t.Fatalf("request id %q in the body, %q in the header", doc.RequestID, w.Header().Get("x-amzn-RequestId"))
		}
	}
	return w.Code, doc, w.Header()
}

func TestRefusals(t *testing.T) {
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	describe := form("Action", "DescribeLoadBalancers", "Version", Version)
	tests := []struct {
		name         string
		form         url.Values
		key, secret  string
		status       int
		code, msgHas string
	}{
		{"unsigned", describe, "", "", 403, "MissingAuthenticationToken", "Authentication Token"},
		{"wrong secret", describe, "ops", "not-the-secret-at-all", 403, "SignatureDoesNotMatch", "signature"},
		{"unknown key", describe, "nobody", adminSecret, 403, "InvalidClientTokenId", "invalid"},
		{"no action", form("Version", Version), "ops", adminSecret, 400, "MissingAction", "Action"},
		{"garbled action", form("Action", "Describe/../x", "Version", Version), "ops", adminSecret, 400, "InvalidAction", "not a valid action"},
		{"unknown action", form("Action", "LaunchRockets", "Version", Version), "ops", adminSecret, 400, "InvalidAction", "LaunchRockets"},
		{"no version", form("Action", "DescribeLoadBalancers"), "ops", adminSecret, 400, "MissingParameter", "Version"},
		{"elbv2 version", form("Action", "DescribeLoadBalancers", "Version", "2015-12-01"), "ops", adminSecret, 400, "NoSuchVersion", "2015-12-01"},
		{"unserved action", form("Action", "ApplySecurityGroupsToLoadBalancer", "Version", Version), "ops", adminSecret, 400, "UnsupportedOperation", "does not serve ApplySecurityGroupsToLoadBalancer"},
		{"register key creates", form("Action", "CreateLoadBalancer", "Version", Version, "LoadBalancerName", "web"), "reg", regSecret, 403, "AccessDenied", "admin scope"},
		{"register key deletes", form("Action", "DeleteLoadBalancer", "Version", Version, "LoadBalancerName", "web"), "reg", regSecret, 403, "AccessDenied", "admin scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, doc, _ := call(t, testServer(100), tt.form, tt.key, tt.secret)
			if status != tt.status || doc.Error.Code != tt.code || !strings.Contains(doc.Error.Message, tt.msgHas) || doc.Error.Type != "Sender" {
				t.Fatalf("got %d %s %s %q, want %d Sender %s with %q", status, doc.Error.Type, doc.Error.Code, doc.Error.Message, tt.status, tt.code, tt.msgHas)
			}
		})
	}
}

// TestThrottling: failed authentications count per source; beyond the burst the source is
// refused with Throttling (400, as AWS) and Retry-After, even with a right signature.
func TestThrottling(t *testing.T) {
	s := testServer(2)
	describe := url.Values{"Action": {"DescribeLoadBalancers"}, "Version": {Version}}
	for i := range 2 {
		if status, doc, _ := call(t, s, describe, "ops", "wrong-secret-wrong-secret"); status != 403 || doc.Error.Code != "SignatureDoesNotMatch" {
			t.Fatalf("failure %d: %d %s", i+1, status, doc.Error.Code)
		}
	}
	status, doc, h := call(t, s, describe, "ops", adminSecret)
	if status != 400 || doc.Error.Code != "Throttling" || h.Get("Retry-After") == "" {
		t.Fatalf("after the burst: %d %s (Retry-After %q), want 400 Throttling with Retry-After", status, doc.Error.Code, h.Get("Retry-After"))
	}
	if s.AuthFailures() != 2 {
		t.Fatalf("AuthFailures = %d, want 2", s.AuthFailures())
	}
}

func TestParseParams(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/2012-06-01/?Action=DescribeLoadBalancers&A=query&PolicyAttributes.member.1.%20%20AttributeName=x", strings.NewReader("A=body&Names.member.1=a&Names.member.2=b&Names.member.4=d&L.member.1.Port=80&L.member.2.Port=81"))
	p, err := parseParams(r, []byte("A=body&Names.member.1=a&Names.member.2=b&Names.member.4=d&L.member.1.Port=80&L.member.2.Port=81"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.get("A"); got != "body" {
		t.Errorf("A = %q, want the body's value", got)
	}
	if got := p.get("PolicyAttributes.member.1.AttributeName"); got != "x" {
		t.Errorf("whitespace inside a name not dropped: %v", p)
	}
	if got := strings.Join(p.list("Names"), ","); got != "a,b" {
		t.Errorf("list = %q, want a,b (up to the first gap)", got)
	}
	if got := p.structs("L"); len(got) != 2 || got[1]["Port"] != "81" {
		t.Errorf("structs = %v", got)
	}
	if _, err := p.required("LoadBalancerName"); err == nil || !strings.Contains(err.Error(), "'loadBalancerName'") {
		t.Errorf("required: %v", err)
	}
}

// FuzzParseParams: no input panics, and no parameter name keeps whitespace.
func FuzzParseParams(f *testing.F) {
	f.Add("Action=DescribeLoadBalancers&Version=2012-06-01", "Instances.member.1.InstanceId=i-1")
	f.Add("a%20b=1&%zz", "x=%20")
	f.Fuzz(func(t *testing.T, query, body string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL.RawQuery = query
		p, err := parseParams(r, []byte(body))
		if err != nil {
			return
		}
		for k := range p {
			if strings.ContainsAny(k, " \t\r\n") {
				t.Fatalf("name %q keeps whitespace", k)
			}
		}
		_ = p.list("Instances")
		_ = p.structs("Instances")
	})
}

func TestKeyStringHidesSecret(t *testing.T) {
	k := auth.Key{Signing: []byte("signing"), Secret: []byte(adminSecret), Scope: auth.ScopeAdmin}
	for _, s := range []string{k.String(), k.GoString()} {
		if strings.Contains(s, adminSecret) || strings.Contains(s, "signing") {
			t.Fatalf("key printed as %q", s)
		}
	}
}

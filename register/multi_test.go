package register

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"clb/internal/auth"
)

// TestClientSeveralServers: the first server that applies the change ends the call; servers
// that are down or answer 5xx are skipped at once; a refusal ends the call.
func TestClientSeveralServers(t *testing.T) {
	unavailable := reply{status: 503, code: "store_unavailable", msg: "etcd is unavailable"}
	notApplied := reply{status: 503, code: "not_applied", msg: "haproxy -c failed"}
	tests := []struct {
		name      string
		servers   [][]reply // nil entry: a closed port
		wantKind  Kind
		wantCalls []int // calls each server received
	}{
		{name: "first applies", servers: [][]reply{{{status: 200}}, {{status: 200}}}, wantCalls: []int{1, 0}},
		{name: "first down", servers: [][]reply{nil, {{status: 200}}}, wantCalls: []int{0, 1}},
		{name: "first unavailable", servers: [][]reply{{unavailable}, {{status: 200}}}, wantCalls: []int{1, 1}},
		{name: "first not applied", servers: [][]reply{{notApplied}, {{status: 200}}}, wantCalls: []int{1, 1}},
		{name: "refused by the first", servers: [][]reply{{{status: 400, code: "bad_request", msg: "bad"}}, {{status: 200}}}, wantKind: KindRefused, wantCalls: []int{1, 0}},
		{name: "all unavailable", servers: [][]reply{{unavailable}, nil}, wantKind: KindUnreachable},
		{name: "not applied anywhere", servers: [][]reply{{notApplied}, {unavailable}}, wantKind: KindNotApplied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var list []string
			var fakes []*fakeServer
			for _, replies := range tt.servers {
				if replies == nil {
					list = append(list, closedAddr(t))
					fakes = append(fakes, nil)
					continue
				}
				fs := newFakeServer(t, keysFor("pw"), replies...)
				list = append(list, fs.hostPort())
				fakes = append(fakes, fs)
			}
			c := &Client{Server: strings.Join(list, ","), Key: auth.DeriveKey([]byte("pw")), Timeout: 300 * time.Millisecond}
			fast(c)
			res, err := c.Register(context.Background(), "web", Request{Name: "m1"})
			if tt.wantKind == 0 {
				if err != nil || !res.Applied {
					t.Fatalf("Register = %+v, %v; want applied", res, err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.Kind != tt.wantKind {
					t.Fatalf("Register error = %v, want kind %d", err, tt.wantKind)
				}
			}
			for i, want := range tt.wantCalls {
				got := 0
				if fakes[i] != nil {
					got = len(fakes[i].Calls())
				}
				if got != want {
					t.Errorf("server %d got %d calls, want %d", i, got, want)
				}
			}
		})
	}
}

// TestClientNameWithSeveralAddresses: "localhost" resolves to 127.0.0.1 (and ::1 on most
// machines): each address is a server; the first that answers applies.
func TestClientNameWithSeveralAddresses(t *testing.T) {
	fs := newFakeServer(t, keysFor("pw"))
	_, port, _ := strings.Cut(fs.hostPort(), ":")
	c := &Client{Server: "localhost:" + port, Key: auth.DeriveKey([]byte("pw")), Timeout: 2 * time.Second}
	fast(c)
	if _, err := c.Register(context.Background(), "web", Request{Name: "m1"}); err != nil {
		t.Fatalf("Register via localhost = %v", err)
	}
	targets, err := c.targets(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.url.Hostname() != "localhost" {
			t.Errorf("target URL host %q, want the name kept (TLS verifies it)", tg.url.Host)
		}
	}
	// A pinned target dials its own address whatever the URL says.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Host)) }))
	defer srv.Close()
	hc := pinned(http.DefaultClient, strings.TrimPrefix(srv.URL, "http://"))
	resp, err := hc.Get("http://lb.invalid:1/")
	if err != nil {
		t.Fatalf("pinned client: %v", err)
	}
	resp.Body.Close()
}

func TestCheckServers(t *testing.T) {
	tests := []struct {
		in       string
		tls      bool
		want     string
		wantErr  string
		insecure bool
	}{
		{in: "127.0.0.1,127.0.0.2:8091", want: "127.0.0.1,127.0.0.2:8091"},
		{in: "lb1.example, lb2.example", tls: true, want: "https://lb1.example,https://lb2.example"},
		{in: "127.0.0.1,lb2.example", wantErr: "refusing plain http to lb2.example:8090"},
		{in: "127.0.0.1,lb2.example", insecure: true, want: "127.0.0.1,lb2.example"},
		{in: " , ", wantErr: "server is empty"},
		{in: "127.0.0.1,ftp://x", wantErr: "scheme"},
	}
	for _, tt := range tests {
		got, err := checkServers(tt.in, tt.tls, tt.insecure)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkServers(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("checkServers(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

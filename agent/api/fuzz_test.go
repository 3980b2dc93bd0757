package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"clb/agent/config"
	"clb/internal/model"
)

// The fuzz targets prove that no input can add a line, a directive or a section to the
// rendered haproxy.cfg; run them longer with e.g.
//
//	go test ./agent/api -run '^$' -fuzz FuzzDecodeMember -fuzztime 3m

// FuzzDecodeMember feeds request bodies, path names and source addresses through the API's
// decoding and member building; whatever is accepted must be valid and render exactly one
// server line per listener (model.Validate accepts it). Refusals must be 400 bad_request errors.
func FuzzDecodeMember(f *testing.F) {
	for _, s := range []struct{ body, name, remote string }{
		{`{"address":"10.0.0.5","port":8080}`, "m1", "10.0.0.9:5555"},
		{``, "", "127.0.0.1:1234"},
		{`{"name":"a","weight":0,"zone":"eu-1"}`, "", "[2001:db8::1]:999"},
		{`{"address":"host.example","weight":256}`, "x:1", "192.0.2.1:1"},
		{`{"address":"1.2.3.4\n    server evil 6.6.6.6:80"}`, "m", "1.1.1.1:1"},
		{`{"name":"a b","zone":"a#b"}`, "", "1.1.1.1:1"},
		{`{"weight":1e3,"port":"8"}`, "", "1.1.1.1:1"},
		{`{"address":"fe80::1%eth0"}`, "", "[fe80::1%eth0]:1"},
		{`{"address":"::ffff:10.0.0.1"}`, "", "1.1.1.1:1"},
		{`{} {}`, "", ""},
		{`{"unknown":1}`, "n\n", "x"},
	} {
		f.Add([]byte(s.body), s.name, s.remote)
	}
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}}}}
	cfg.SetDefaults()
	h := &Server{}
	f.Fuzz(func(t *testing.T, body []byte, name, remote string) {
		req, err := decodeMember(body)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "bad_request" {
				t.Fatalf("decode error %v is not a 400 bad_request", err)
			}
			if strings.ContainsAny(ae.Msg, "\n\r") {
				t.Fatalf("error message spans lines: %q", ae.Msg)
			}
			return
		}
		if name != "" && model.ValidateMemberName(name) != nil {
			return // the path name is checked before member is called
		}
		r := httptest.NewRequest("PUT", "/v1/services/web/members/x", nil)
		r.RemoteAddr = remote
		m, err := h.member(r, cfg.Services["web"], req, name)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
				t.Fatalf("member error %v is not a 400", err)
			}
			return
		}
		// A member that validates renders one well-formed server line and nothing else:
		// FuzzRenderMembers (package reconcile) proves that half.
		if err := m.Validate(); err != nil {
			t.Fatalf("member %+v accepted but invalid: %v", m, err)
		}
	})
}

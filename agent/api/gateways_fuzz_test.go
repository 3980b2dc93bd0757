package api

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"clb/agent/config"
	"clb/internal/gateway"
)

// FuzzDecodeDomain feeds domain bodies through the API's decoding and the validation the core
// runs before saving: every refusal must be a 400 or a 409 with a one-line message (never a
// 500), and whatever is accepted must compile (the gateway package's own fuzz targets prove
// that compiled maps cannot add a line or change the scaffold).
func FuzzDecodeDomain(f *testing.F) {
	for _, s := range []string{
		`{"routes":[{"name":"r","match":{"path_prefix":"/a"},"service":"web"}]}`,
		`{"routes":[{"name":"r","match":{"path_regex":"^/(a+)+$"},"service":"web"}]}`,
		`{"routes":[{"name":"r","match":{"path_regex":"^/v/(.*)$"},"service":"web","rewrite":{"replacement":"/\\1"}}]}`,
		`{"routes":[{"name":"r","service":"nope"}]}`,
		`{"routes":[{"name":"r\n","match":{"user_agent":"a\nb"},"status":410}]}`,
		`{"routes":[{"name":"a","match":{"headers":{"x-h":"^1$"},"methods":["GET"]},"service":"web"}],"no_match_status":403}`,
		`{"routes":[]} {}`, `{"routez":1}`, ``,
	} {
		f.Add([]byte(s))
	}
	cfg := config.Defaults()
	cfg.Services = map[string]config.Service{"web": {Listeners: []config.Listener{{Port: 80, MemberPort: 8080}}}}
	cfg.SetDefaults()
	gw := gateway.Gateway{Bind: ":8000", Headers: []string{"x-h"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var d gateway.Domain
		var err error
		if err = decodeStrict(body, &d, "domain a.example"); err == nil {
			if _, verr := gateway.ValidateDomain("a.example", d, gw, cfg.Targets()); verr != nil {
				err = gatewayError("define domain a.example", verr)
			}
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || (ae.Status != http.StatusBadRequest && ae.Status != http.StatusConflict) {
				t.Fatalf("refusal %v is not a 400 or 409 API error", err)
			}
			if strings.ContainsAny(ae.Msg, "\n\r") {
				t.Fatalf("error message spans lines: %q", ae.Msg)
			}
			return
		}
		g := gw
		g.Domains = map[string]gateway.Domain{"a.example": d}
		if _, err := gateway.Compile(map[string]gateway.Gateway{"pub": g}, cfg.Targets()); err != nil {
			t.Fatalf("domain accepted but does not compile: %v", err)
		}
	})
}

package config

import (
	"errors"
	"strings"
	"testing"

	"clb/internal/gateway"
)

func gatewayConfig(t *testing.T, yml string) *Config {
	t.Helper()
	c := Defaults()
	if err := Decode(&c, []byte(yml), "test"); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	return &c
}

const gwServices = `services:
  web:
    listeners: [{port: 80, member_port: 8080}]
  blog:
    listeners: [{port: 9001, protocol: gateway, member_port: 8081}]
  db:
    listeners: [{port: 5432, protocol: tcp}]
`

func TestGatewaysValidate(t *testing.T) {
	for _, tt := range []struct {
		name, gateways, errHas string
		unknown                bool
	}{
		{name: "ok", gateways: `{pub: {bind: ":8000", domains: {a.example: {routes: [{name: r, service: blog}, {name: s, service: web}]}}}}`},
		{name: "unknown service", gateways: `{pub: {bind: ":8000", domains: {a.example: {routes: [{name: r, service: nope}]}}}}`, errHas: "nope", unknown: true},
		{name: "tcp listener", gateways: `{pub: {bind: ":8000", domains: {a.example: {routes: [{name: r, service: db}]}}}}`, errHas: "db", unknown: true},
		{name: "bind of a service", gateways: `{pub: {bind: "127.0.0.1:80"}}`, errHas: "already used by service web"},
		{name: "two gateways on a port", gateways: `{a: {bind: ":8000"}, b: {bind: "0.0.0.0:8000"}}`, errHas: "already used by gateway a"},
		{name: "gateway listener binds nothing", gateways: `{pub: {bind: ":9001"}}`},
		{name: "bad bind", gateways: `{pub: {bind: "8000"}}`, errHas: "bind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := gatewayConfig(t, gwServices+"gateways: "+tt.gateways+"\n")
			err := c.Validate()
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.errHas)
			}
			if got := errors.Is(err, gateway.ErrUnknownService); got != tt.unknown {
				t.Errorf("errors.Is(err, ErrUnknownService) = %v, want %v", got, tt.unknown)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	c := gatewayConfig(t, gwServices+`  two:
    listeners: [{port: 81}, {port: 82}]
`)
	for _, tt := range []struct {
		service string
		port    int
		want    string
	}{
		{"web", 0, "web_80"}, {"blog", 0, "blog_9001"}, {"blog", 9001, "blog_9001"}, {"two", 82, "two_82"},
		{"two", 0, ""}, {"db", 0, ""}, {"web", 81, ""}, {"nope", 0, ""},
	} {
		got, err := c.Targets().Backend(tt.service, tt.port)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("Backend(%s, %d) = %q, %v; want %q", tt.service, tt.port, got, err, tt.want)
		}
	}
}

func TestMergeGateways(t *testing.T) {
	base := gatewayConfig(t, gwServices)
	file := map[string]gateway.Gateway{"pub": {Bind: ":8000"}}
	api := map[string]gateway.Gateway{"pub": {Bind: ":8001"}, "other": {Bind: ":8002"}}
	merged, shadowed, err := MergeAll(base, Sources{FileServices: base.Services, FileGateways: file, Gateways: api})
	if err != nil {
		t.Fatal(err)
	}
	if merged.Gateways["pub"].Bind != ":8000" || merged.Gateways["other"].Bind != ":8002" || len(shadowed) != 1 || shadowed[0] != "gateway pub" {
		t.Errorf("merged %v, shadowed %v: want the file's pub, the API's other, pub shadowed", merged.Gateways, shadowed)
	}
	// A route of an API gateway to a service that is gone makes the merge invalid.
	api["other"] = gateway.Gateway{Bind: ":8002", Domains: map[string]gateway.Domain{"a.example": {Routes: []gateway.Route{{Name: "r", Service: "gone"}}}}}
	if _, _, err := MergeAll(base, Sources{FileServices: base.Services, FileGateways: file, Gateways: api}); !errors.Is(err, gateway.ErrUnknownService) {
		t.Errorf("MergeAll with a route to an unknown service = %v, want ErrUnknownService", err)
	}
}

package reconcile

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	maps_ "maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"clb/agent/config"
	"clb/internal/gateway"
	"clb/internal/haproxy"
	"clb/internal/model"
	"clb/internal/render"
	"clb/internal/store"
	"clb/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// renderCase is testdata/render/<case>.json: services (none = the built-in default config)
// and members by service.
type renderCase struct {
	Services map[string]config.Service `yaml:"services"`
	Members  map[string][]model.Member `yaml:"members"`
	// HaproxyMetricsListen is the config key of the same name.
	HaproxyMetricsListen string `yaml:"haproxy_metrics_listen"`
	// Gateways are the config's gateways; their map files are compared with
	// <case>.maps.golden (each file after a "## NAME" line).
	Gateways map[string]gateway.Gateway `yaml:"gateways"`
}

// TestRenderGolden renders every case with the built-in template, compares it with
// <case>.cfg.golden and has haproxy -c accept it.
func TestRenderGolden(t *testing.T) {
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cases, _ := filepath.Glob("testdata/render/*.json")
	if len(cases) == 0 {
		t.Fatal("no render cases")
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			raw = bytes.ReplaceAll(raw, []byte("@TESTDATA@"), []byte(testdata))
			var rc renderCase
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			if err := dec.Decode(&rc); err != nil {
				t.Fatal(err)
			}
			cfg := config.Defaults()
			if rc.Services == nil {
				if err := config.Decode(&cfg, config.DefaultConfigYAML(), "default"); err != nil {
					t.Fatal(err)
				}
			} else {
				cfg.Services = rc.Services
			}
			cfg.HaproxyMetricsListen = rc.HaproxyMetricsListen
			cfg.Gateways = rc.Gateways
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			tmpl, source, err := render.Load("")
			if err != nil {
				t.Fatal(err)
			}
			data := Desired(&cfg, store.Snapshot{Members: rc.Members}, nil,
				render.Data{TemplateSource: source, AdminSocket: "/run/clb/admin.sock", ServerStateFile: "/var/lib/clb-server/haproxy.state"})
			tmp := t.TempDir()
			mapDir := filepath.Join(tmp, "clb-maps")
			data.GatewayConfig, data.Maps, data.Certs, err = Gateways(&cfg, mapDir, filepath.Join(tmp, "clb-certs"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := WriteMaps(data.Maps); err != nil {
				t.Fatal(err)
			}
			got, err := render.Render(tmpl, data)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".json") + ".cfg.golden"
			portable := bytes.ReplaceAll(bytes.ReplaceAll(got, []byte(testdata), []byte("@TESTDATA@")), []byte(mapDir), []byte("@MAPDIR@"))
			if len(data.Maps) > 0 {
				var maps bytes.Buffer
				for _, p := range slices.Sorted(maps_.Keys(data.Maps)) {
					fmt.Fprintf(&maps, "## %s\n%s", filepath.Base(p), data.Maps[p].Bytes)
				}
				mapsGolden := strings.TrimSuffix(path, ".json") + ".maps.golden"
				if *update {
					if err := os.WriteFile(mapsGolden, maps.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if want, err := os.ReadFile(mapsGolden); err != nil || !bytes.Equal(want, maps.Bytes()) {
					t.Errorf("map files differ from %s (%v; run with -update after checking):\n--- got\n%s", mapsGolden, err, maps.Bytes())
				}
			}
			if *update {
				if err := os.WriteFile(golden, portable, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./agent/reconcile -run TestRenderGolden -update)", err)
			}
			if !bytes.Equal(portable, want) {
				t.Errorf("rendered config differs from %s (run with -update after checking):\n--- got\n%s", golden, portable)
			}
			requireHaproxy(t)
			cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(cfgPath, got, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := haproxy.Check(context.Background(), "haproxy", cfgPath); err != nil {
				t.Errorf("haproxy -c refused %s: %v", golden, err)
			}
		})
	}
}

func requireHaproxy(t testing.TB) { testutil.RequireHaproxy(t) }

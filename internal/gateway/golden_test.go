package gateway

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type goldenCase struct {
	Targets  ServiceTargets     `json:"targets"`
	Gateways map[string]Gateway `json:"gateways"`
}

// goldenText is a case's whole output: each domain's decision list, each map file and the
// scaffold, with the maps in /etc/clb/maps.
func goldenText(t *testing.T, c *Compiled) string {
	var b strings.Builder
	for _, f := range c.Frontends {
		b.WriteString("### decision lists of gateway " + f.Gateway + "\n")
		hosts := make([]string, 0)
		for h := range c.Domains[f.Gateway] {
			hosts = append(hosts, h)
		}
		sortStrings(hosts)
		for _, h := range hosts {
			fmt.Fprintf(&b, "%s:\n", h)
			for i, e := range c.Domains[f.Gateway][h] {
				j, _ := json.Marshal(e)
				fmt.Fprintf(&b, "  %d. %s\n", i+1, j)
			}
		}
	}
	for _, n := range c.MapNames() {
		fmt.Fprintf(&b, "### map %s\n%s", n, c.MapFile(n))
	}
	sc, err := RenderScaffold("/etc/clb/maps", c)
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("### scaffold\n" + sc + "\n")
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestGolden compiles testdata/golden/<case>.json and compares with <case>.golden (-update
// rewrites them); each case's scaffold and maps also pass haproxy -c.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, in := range cases {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&gc); err != nil {
				t.Fatal(err)
			}
			for n, g := range gc.Gateways {
				if _, err := Validate(n, g, gc.Targets); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Compile(gc.Gateways, gc.Targets)
			if err != nil {
				t.Fatal(err)
			}
			got := goldenText(t, c)
			// Deterministic: a second compile gives the same bytes.
			c2, _ := Compile(gc.Gateways, gc.Targets)
			if again := goldenText(t, c2); again != got {
				t.Fatal("two compiles of the same gateways differ")
			}
			path := strings.TrimSuffix(in, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the output (go test -run TestGolden -update rewrites it):\n%s", path, got)
			}
			dir := t.TempDir()
			writeMaps(t, c, dir)
			cfg := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(cfg, []byte(labConfig(t, c, dir, filepath.Join(dir, "s.sock"), targetBackends(gc.Targets))), 0o644); err != nil {
				t.Fatal(err)
			}
			checkConfig(t, cfg)
		})
	}
}

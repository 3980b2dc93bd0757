package agent_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// listed is what `go list -json` says of one package of the module.
type listed struct {
	ImportPath string
	Doc        string
	Deps       []string
}

func listModule(t *testing.T) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "clb/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; want the whole module", len(pkgs))
	}
	return pkgs
}

// TestImportRules keeps the package graph one way (in the spirit of tailscale's depaware): the
// fronts never reach the reconciler and the reconciler no front, nothing below agent/ imports
// the daemon's composition root, and the member side shares nothing with the daemon. The
// rules read the dependencies of the non-test code, transitively.
func TestImportRules(t *testing.T) {
	fronts := []string{"clb/agent/api", "clb/agent/awsapi", "clb/agent/console", "clb/agent/eru"}
	rules := []struct {
		what     string
		applies  func(pkg string) bool
		refused  func(dep string) bool
		whyShort string
	}{
		{"fronts do not import the reconciler", func(p string) bool { return slices.Contains(fronts, p) },
			func(d string) bool { return d == "clb/agent/reconcile" }, "a front asks for applies through its own Applier interface"},
		{"the reconciler imports no front", func(p string) bool { return p == "clb/agent/reconcile" },
			func(d string) bool { return slices.Contains(fronts, d) }, "the one writer knows nothing of the APIs"},
		{"nothing below agent/ imports agent", func(p string) bool { return strings.HasPrefix(p, "clb/agent/") },
			func(d string) bool { return d == "clb/agent" }, "agent is the composition root"},
		{"config, defs and reconcile import no daemon or front", func(p string) bool {
			return p == "clb/agent/config" || p == "clb/agent/defs"
		}, func(d string) bool { return d == "clb/agent/api" || d == "clb/agent/reconcile" }, "they are the core below both"},
		{"register (member side) imports nothing of the daemon", func(p string) bool { return p == "clb/register" || strings.HasPrefix(p, "clb/cmd/clb_") },
			func(d string) bool {
				return d == "clb/agent" || strings.HasPrefix(d, "clb/agent/") || d == "clb/internal/clbdcli"
			}, "clb-client ships without the daemon"},
		{"internal/ leaves import nothing of the daemon", func(p string) bool {
			return strings.HasPrefix(p, "clb/internal/") && p != "clb/internal/clbdcli" && !strings.HasPrefix(p, "clb/internal/tools/")
		}, func(d string) bool { return d == "clb/agent" || strings.HasPrefix(d, "clb/agent/") }, "leaves are below the daemon"},
	}
	pkgs := listModule(t)
	for _, p := range pkgs {
		for _, r := range rules {
			if !r.applies(p.ImportPath) {
				continue
			}
			for _, d := range p.Deps {
				if r.refused(d) {
					t.Errorf("%s depends on %s: %s (%s)", p.ImportPath, d, r.what, r.whyShort)
				}
			}
		}
	}
}

// TestPackageDocs: every package says what it is for in a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listModule(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}

package gateway

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"text/template"

	"clb/internal/haproxy"
)

// ScaffoldTemplate is the text/template of the gateways' haproxy sections: one frontend per
// gateway and the fixed-status backends, executed on ScaffoldData (RenderScaffold does it).
// Everything a route change touches is in the maps it reads, so it renders the same bytes
// for the same gateways' binds, protocols, headers and default statuses.
//
//go:embed scaffold.tmpl
var ScaffoldTemplate string

var scaffold = template.Must(template.New("gateways").Parse(ScaffoldTemplate))

// ScaffoldData is what ScaffoldTemplate is executed on.
type ScaffoldData struct {
	// MapDir is the directory of the map files, as haproxy is to read it (absolute); the
	// runtime API names each map by exactly this path.
	MapDir         string
	Frontends      []Frontend
	StatusBackends []StatusBackendData
	// Forwarded are the X-Forwarded-* lines of every frontend (haproxy.ForwardedHeaders).
	Forwarded []string
}

// StatusBackends lists the scaffold's fixed-status backends (one per Statuses entry).
func StatusBackends() []StatusBackendData {
	out := make([]StatusBackendData, 0, len(Statuses))
	for _, s := range Statuses {
		body := ""
		if s != http.StatusNoContent {
			body = fmt.Sprintf("%d %s\\n", s, http.StatusText(s))
		}
		out = append(out, StatusBackendData{Name: StatusBackend(s), Status: s, Body: body})
	}
	return out
}

// MapPath is the path of a map file as the scaffold names it.
func MapPath(mapDir, name string) string {
	return strings.TrimSuffix(mapDir, "/") + "/" + name
}

// RenderScaffold renders the gateways' haproxy sections for c, reading maps from mapDir.
// Without gateways it renders nothing.
func RenderScaffold(mapDir string, c *Compiled) (string, error) {
	if strings.ContainsAny(mapDir, " \t\r\n\"#\\") || !strings.HasPrefix(mapDir, "/") {
		return "", fmt.Errorf("%w: map directory %q: want an absolute path without spaces, quotes, # or backslashes", ErrInvalid, mapDir)
	}
	var b strings.Builder
	err := scaffold.Execute(&b, ScaffoldData{MapDir: strings.TrimSuffix(mapDir, "/"), Frontends: c.Frontends, StatusBackends: StatusBackends(), Forwarded: haproxy.ForwardedHeaders()})
	if err != nil {
		return "", fmt.Errorf("render gateway scaffold: %w", err)
	}
	return b.String(), nil
}

// Package templates holds the built-in haproxy.cfg template, embedded in clbd. Users override
// it with their own haproxy.tmpl in clbd's templates directory; this one is the fallback and
// the starting point (the clb-server package installs a copy to edit).
package templates

import _ "embed"

// Name is the file name clbd looks for in its templates directory.
const Name = "haproxy.tmpl"

// Default is the built-in template.
//
//go:embed haproxy.tmpl
var Default string

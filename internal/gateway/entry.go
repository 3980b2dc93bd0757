package gateway

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// Targets answers the haproxy backend of a clb service's http listener. Callers implement it
// over their service definitions (the backend of service S's listener on port P is
// config.BackendName(S, P), "S_P"). Port 0 means the service's only http listener; a service
// with none, or with several and port 0, is an error. Any error it returns is reported
// wrapped in ErrUnknownService (409 for the API).
type Targets interface {
	Backend(service string, port int) (backend string, err error)
}

// ServiceTargets is a Targets over a plain list: service name → ports of its http
// listeners. Backend names are "service_port", as agent/config.BackendName makes them.
type ServiceTargets map[string][]int

// Backend implements Targets.
func (s ServiceTargets) Backend(service string, port int) (string, error) {
	ports, ok := s[service]
	if !ok {
		return "", fmt.Errorf("no service %q", service)
	}
	if port == 0 {
		if len(ports) != 1 {
			return "", fmt.Errorf("service %q has %d http listeners: name the port", service, len(ports))
		}
		port = ports[0]
	}
	for _, p := range ports {
		if p == port {
			return service + "_" + strconv.Itoa(p), nil
		}
	}
	return "", fmt.Errorf("service %q has no http listener on port %d", service, port)
}

// ErrUnknownService is wrapped (with the service's name) by validation and compilation errors
// about a route or Eru backend rule that names a service, or a port, that Targets does not
// know. The API answers it with 409 conflict.
var ErrUnknownService = errors.New("unknown service")

// Field is one field of the request subject a condition tests.
type Field string

// The fields of a request that conditions test. FieldHeader is followed by the header's
// name: "header:x-canary".
const (
	FieldMethod Field = "method"
	// FieldUA is the User-Agent, lower-cased (ASCII), as Eru elb matches it.
	FieldUA Field = "ua"
	// FieldUARaw is the User-Agent as sent.
	FieldUARaw  Field = "ua_raw"
	FieldPath   Field = "path"
	FieldHeader Field = "header:"
)

// CondKind says how a condition tests its field.
type CondKind string

// Condition kinds.
const (
	CondExact   CondKind = "exact"   // the field equals Value
	CondPrefix  CondKind = "prefix"  // the field starts with Value
	CondSegment CondKind = "segment" // the field is Value or starts with Value + "/"
	CondRegex   CondKind = "regex"   // Value is found in the field (a non-empty one for headers and the user agent)
	CondMethods CondKind = "methods" // the field is one of Values
)

// Cond is one test of a decision-list entry.
type Cond struct {
	Field  Field    `json:"field"`
	Kind   CondKind `json:"kind"`
	Value  string   `json:"value,omitempty"`
	Values []string `json:"values,omitempty"`
	re     *userRegex
}

// RewriteKind says how an entry computes the new path.
type RewriteKind string

// Rewrite kinds.
const (
	RewriteStrip   RewriteKind = "strip"   // remove Prefix
	RewriteReplace RewriteKind = "replace" // replace Prefix with Replacement
	RewriteRegex   RewriteKind = "regex"   // Replacement with \1..\9 from Pattern's groups
	// RewriteEru is Eru elb's path rewrite, fixed: the new path is Pattern's first group with
	// a leading "/", or "/" when the pattern has no group.
	RewriteEru RewriteKind = "eru"
)

// EntryRewrite is the path rewrite of a decision-list entry. The rewritten path's leading run
// of slashes is always squeezed to one ("//a" → "/a"), in haproxy and in the model.
type EntryRewrite struct {
	Kind        RewriteKind `json:"kind"`
	Prefix      string      `json:"prefix,omitempty"`
	Segment     bool        `json:"segment,omitempty"` // Prefix is a segment prefix
	Pattern     string      `json:"pattern,omitempty"`
	Replacement string      `json:"replacement,omitempty"`
	// Rule is the Eru rule that rewrites (RewriteEru).
	Rule string `json:"rule,omitempty"`
	re   *userRegex
}

// Entry is one line of a domain's decision list, the compiled form that both declared routes
// and Eru rule graphs compile to: all Conds hold (an Eru graph may test the same field more
// than once), then the request goes to Backend with the path rewritten by Rewrite. Entries are
// tried in order, first match wins.
type Entry struct {
	// Source names what the entry came from: a route's name, or the Eru rules walked
	// ("r1>r4>r2").
	Source  string        `json:"source"`
	Conds   []Cond        `json:"conds,omitempty"`
	Rewrite *EntryRewrite `json:"rewrite,omitempty"`
	// Backend is the haproxy backend: a service's (from Targets) or StatusBackend(Status).
	Backend string `json:"backend"`
	// Status is set when the entry answers a fixed status instead of a service.
	Status int `json:"status,omitempty"`
}

// tree reports whether the entry fits the exact/prefix tree maps: at most one path condition
// that is not a regex, nothing else.
func (e Entry) tree() bool {
	if e.Rewrite != nil || len(e.Conds) > 1 {
		return false
	}
	return len(e.Conds) == 0 || (e.Conds[0].Field == FieldPath && e.Conds[0].Kind != CondRegex)
}

// Statuses are the fixed statuses a route, a domain's no-match and a gateway's default may
// answer. Each has a backend in the scaffold (StatusBackend), so that a route changing to
// another status is a map change, not a reload.
var Statuses = []int{200, 204, 400, 401, 403, 404, 405, 408, 410, 421, 429, 451, 500, 501, 502, 503, 504}

// StatusBackend is the scaffold's backend that answers status. The name holds a dot, which
// no service backend ("service_port") can.
func StatusBackend(status int) string { return "gw.status." + strconv.Itoa(status) }

func validStatus(s int) bool {
	for _, v := range Statuses {
		if v == s {
			return true
		}
	}
	return false
}

var backendRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

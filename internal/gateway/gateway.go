// Package gateway is clb's model of L7 routing: a gateway is a shared HTTP or HTTPS
// listener that serves many domains (host names); each domain has ordered routes, first
// match wins, that send a request to a clb service or answer a fixed status, optionally
// rewriting the path. Gateways are defined in the config file and through the API, and are
// compiled into haproxy map files read by a fixed frontend scaffold, so that route changes
// are applied through the runtime API without a reload.
//
// This file holds the types (the stored and served shapes). Validation (validate.go), the
// Eru graph compiler (eru.go), the map compiler (compile.go, plan.go), the scaffold
// (scaffold.tmpl) and the model router (model.go) live beside it; README.md in this
// directory states the routing semantics.
package gateway

// Gateway is one shared listener and the domains it serves.
type Gateway struct {
	// Bind is the address:port of the listener ("0.0.0.0:80", ":443", "[::]:80").
	Bind string `yaml:"bind" json:"bind"`
	// Protocol is "http" (the default) or "https".
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// Certificates is a directory of PEM files (certificate chain and key, one file per
	// domain, named DOMAIN.pem) served by SNI on an https gateway. A domain may name its
	// own file instead (Domain.Certificate).
	Certificates string `yaml:"certificates,omitempty" json:"certificates,omitempty"`
	// DefaultStatus is the answer for a host that has no domain here (404 when 0).
	DefaultStatus int `yaml:"default_status,omitempty" json:"default_status,omitempty"`
	// Headers are the request header names (at most MaxHeaders, lower case) that routes of
	// this gateway may test. They are part of the frontend scaffold: changing them reloads.
	Headers []string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Domains by host name (lower case, no port).
	Domains map[string]Domain `yaml:"domains,omitempty" json:"domains,omitempty"`
}

// MaxHeaders is the number of header names a gateway's routes may test.
const MaxHeaders = 4

// Domain is one host name of a gateway and its routes.
type Domain struct {
	// Routes are tried in order; the first that matches serves the request.
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
	// NoMatchStatus is the answer when no route matches (404 when 0).
	NoMatchStatus int `yaml:"no_match_status,omitempty" json:"no_match_status,omitempty"`
	// Certificate is the PEM file (chain and key) of this domain on an https gateway; empty
	// takes DOMAIN.pem from the gateway's Certificates directory.
	Certificate string `yaml:"certificate,omitempty" json:"certificate,omitempty"`
	// RedirectHTTPS answers plain HTTP requests for this domain, on an http gateway, with a
	// 301 to the same URL on https.
	RedirectHTTPS bool `yaml:"redirect_https,omitempty" json:"redirect_https,omitempty"`
	// Eru is the rule set as an Eru elb client sent it, when the domain was defined through
	// the Eru adapter; Routes are then compiled from it. It is kept so that the adapter's GET
	// answers exactly what was PUT.
	Eru *EruRules `yaml:"eru,omitempty" json:"eru,omitempty"`
}

// Route is one routing rule: all of Match must hold; then the request goes to Service (or
// gets Status), with the path rewritten by Rewrite.
type Route struct {
	// Name identifies the route in errors and warnings (letters, digits, _ and -).
	Name  string `yaml:"name" json:"name"`
	Match Match  `yaml:"match,omitempty" json:"match,omitempty"`
	// Service is the clb service that serves matching requests, through its listener on
	// Port (0: its only http listener).
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	Port    int    `yaml:"port,omitempty" json:"port,omitempty"`
	// Status is a fixed answer instead of a service (e.g. 403, 410, 503).
	Status  int      `yaml:"status,omitempty" json:"status,omitempty"`
	Rewrite *Rewrite `yaml:"rewrite,omitempty" json:"rewrite,omitempty"`
}

// Match is what a request must have for a route to serve it. Empty fields match every
// request; a Match with no field set is a catch-all. At most one path field is set.
type Match struct {
	// PathExact is the whole path (no query string).
	PathExact string `yaml:"path_exact,omitempty" json:"path_exact,omitempty"`
	// PathPrefix is a string prefix of the path: "/api" matches "/api", "/api/x" and "/apix".
	PathPrefix string `yaml:"path_prefix,omitempty" json:"path_prefix,omitempty"`
	// PathSegmentPrefix is a prefix of whole path segments: "/api" matches "/api" and
	// "/api/x", not "/apix".
	PathSegmentPrefix string `yaml:"path_segment_prefix,omitempty" json:"path_segment_prefix,omitempty"`
	// PathRegex is a regular expression searched in the path (anchor it with ^ and $).
	PathRegex string `yaml:"path_regex,omitempty" json:"path_regex,omitempty"`
	// UserAgent is a regular expression searched in the User-Agent header, lower-cased
	// unless UserAgentCaseSensitive (Eru elb's semantics). A request without one does not
	// match.
	UserAgent              string `yaml:"user_agent,omitempty" json:"user_agent,omitempty"`
	UserAgentCaseSensitive bool   `yaml:"user_agent_case_sensitive,omitempty" json:"user_agent_case_sensitive,omitempty"`
	// Headers are regular expressions searched in the named request headers; the names
	// must be among the gateway's Headers.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Methods are the request methods that match (upper case); empty is all.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
}

// Rewrite changes the path of a matching request before it is sent on; the query string is
// kept. Exactly one form is set.
type Rewrite struct {
	// StripPrefix removes this prefix of the path, which must be the route's path_prefix or
	// path_segment_prefix: "/blog" turns "/blog/a" into "/a" and "/blog" into "/".
	StripPrefix string `yaml:"strip_prefix,omitempty" json:"strip_prefix,omitempty"`
	// ReplacePrefix replaces the route's path_prefix or path_segment_prefix with this
	// string: "/v2" with prefix "/api" turns "/api/x" into "/v2/x".
	ReplacePrefix string `yaml:"replace_prefix,omitempty" json:"replace_prefix,omitempty"`
	// Replacement is the new path made from the route's path_regex: \1 to \9 are its groups.
	Replacement string `yaml:"replacement,omitempty" json:"replacement,omitempty"`
}

// EruRules is an Eru elb domain rule set: a graph of named rules walked from Init.
type EruRules struct {
	Init  string             `yaml:"init" json:"init"`
	Rules map[string]EruRule `yaml:"rules" json:"rules"`
}

// EruRule is one Eru rule: type "ua" or "path" (a test, with args pattern, succ, fail, and
// for path regex and rewrite) or "backend" (args servername).
type EruRule struct {
	Type string         `yaml:"type" json:"type"`
	Args map[string]any `yaml:"args" json:"args"`
}

package haproxy

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
)

// ForwardedHeaders are the `http-request` lines of a gateway frontend that set
// X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Port as Elastic Load Balancing does:
// the client's address is appended to the X-Forwarded-For the request came with ("a, b"
// in one header; a request with several X-Forwarded-For lines gets one more line, which
// means the same list), and Proto (http or https, as the client connected to haproxy) and
// Port (the port it connected to) replace whatever the client sent. A frontend using them
// must not also set `option forwardfor`.
func ForwardedHeaders() []string {
	return []string{
		`http-request set-header X-Forwarded-For "%[req.fhdr(x-forwarded-for)], %[src]" if { req.fhdr_cnt(x-forwarded-for) eq 1 }`,
		`http-request add-header X-Forwarded-For %[src] unless { req.fhdr_cnt(x-forwarded-for) eq 1 }`,
		`http-request set-header X-Forwarded-Proto https if { ssl_fc }`,
		`http-request set-header X-Forwarded-Proto http unless { ssl_fc }`,
		`http-request set-header X-Forwarded-Port %[dst_port]`,
	}
}

// RedirectHTTPSLines are the `http-request` lines, first in a gateway frontend, that answer
// a plain-HTTP request for a domain listed in the map file mapPath (RenderRedirectMap) with
// a 301 to the same path and query on https. The map is read per request, so a domain's
// redirect is switched on or off through the runtime API (`add map`/`del map`), no reload.
// The Host header is matched without its port, lower-cased, as gateway routing does.
func RedirectHTTPSLines(mapPath string) []string {
	return []string{
		`http-request set-var(txn.clb_https) req.hdr(host),field(1,:),lower,map_str(` + mapPath + `) unless { ssl_fc }`,
		`http-request redirect location %[var(txn.clb_https)]%[pathq] code 301 if { var(txn.clb_https) -m found }`,
	}
}

// RenderRedirectMap is the map file of RedirectHTTPSLines: one line per host that
// redirects, its value the https origin (`https://host`, with `:port` unless the https
// gateway listens on 443). hosts maps a host (lower case, no port) to that port.
func RenderRedirectMap(hosts map[string]int) []byte {
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, h := range names {
		fmt.Fprintf(&b, "%s %s\n", h, RedirectOrigin(h, hosts[h]))
	}
	return b.Bytes()
}

// RedirectOrigin is the value of host's line in the redirect map.
func RedirectOrigin(host string, port int) string {
	if port == 443 || port == 0 {
		return "https://" + host
	}
	return "https://" + host + ":" + strconv.Itoa(port)
}

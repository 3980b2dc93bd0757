package gateway

import "strconv"

// SyntheticDomain builds a domain of n routes to service, for benchmarks: with regex false,
// path_prefix routes "/r0/", "/r1/", ... (a tree domain); with regex true, path_regex routes
// "^/r0/(.*)$", ... rewriting to "/\1" (a regex-shard domain). Route i serves "/r<i>/...";
// the last route is the one a request for "/r<n-1>/x" scans to.
func SyntheticDomain(n int, regex bool, service string) Domain {
	d := Domain{Routes: make([]Route, 0, n)}
	for i := range n {
		r := Route{Name: "r" + strconv.Itoa(i), Service: service}
		if regex {
			r.Match.PathRegex = "^/r" + strconv.Itoa(i) + "/(.*)$"
			r.Rewrite = &Rewrite{Replacement: `/\1`}
		} else {
			r.Match.PathPrefix = "/r" + strconv.Itoa(i) + "/"
		}
		d.Routes = append(d.Routes, r)
	}
	return d
}

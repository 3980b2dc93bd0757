package register

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"clb/internal/model"
)

// DefaultPort is the port of clbd's API, used when CLB_SERVER names none.
const DefaultPort = 8090

// ParseServer turns a CLB_SERVER value into the API's base URL. It accepts a host name or IP
// address with an optional port ("lb.example", "lb.example:8090", "10.0.0.1", "[::1]:8090",
// "::1") or an http or https URL, optionally with a path prefix. The default scheme is http
// and the default port is 8090, also for a URL without a port: it is the API's port, not
// the web's, so a proxy on 443 must be written https://host:443.
func ParseServer(s string) (*url.URL, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("server is empty: want HOST, HOST:PORT or a URL")
	}
	var (
		u    *url.URL
		host string
		port string
	)
	if strings.Contains(s, "://") {
		var err error
		u, err = url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("server %q: %w", clip(orig), err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("server %q: scheme %q: want http or https", clip(orig), u.Scheme)
		}
		if u.User != nil {
			return nil, fmt.Errorf("server %q: credentials in the URL are not supported: use --password-file", clip(orig))
		}
		if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return nil, fmt.Errorf("server %q: a query or fragment is not allowed", clip(orig))
		}
		host, port = u.Hostname(), u.Port()
		if strings.HasSuffix(u.Host, ":") {
			return nil, fmt.Errorf("server %q: empty port", clip(orig))
		}
	} else {
		if strings.ContainsAny(s, "/?#@ \t") {
			return nil, fmt.Errorf("server %q: want HOST, HOST:PORT or a URL", clip(orig))
		}
		u = &url.URL{Scheme: "http"}
		switch {
		case strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
			host = s // a bare IPv6 address
		case strings.Contains(s, ":") || strings.HasPrefix(s, "["):
			h, p, err := net.SplitHostPort(s)
			if err != nil {
				if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
					return nil, fmt.Errorf("server %q: want HOST, HOST:PORT or a URL", clip(orig))
				}
				h, p = s[1:len(s)-1], "" // "[::1]"
			}
			host, port = h, p
			if port == "" && strings.HasSuffix(s, ":") {
				return nil, fmt.Errorf("server %q: empty port", clip(orig))
			}
		default:
			host = s
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("server %q: IPv6 zones are not supported", clip(orig))
		}
	} else if !model.ValidHostname(host) {
		return nil, fmt.Errorf("server %q: %q is not a host name or IP address", clip(orig), clip(host))
	}
	if port == "" {
		port = strconv.Itoa(DefaultPort)
	}
	p, err := strconv.Atoi(port)
	if err != nil || model.ValidatePort(p) != nil {
		return nil, fmt.Errorf("server %q: port %q: want 1-65535", clip(orig), clip(port))
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(p))
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// clip keeps error messages short and on one line whatever the input was.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

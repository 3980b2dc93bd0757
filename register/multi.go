package register

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Several load balancers. Client.Server may name several clbd nodes that share one
// membership (etcd), comma-separated ("lb1,lb2:8090,https://lb3"), and one host name may
// resolve to several addresses: each address is then a server of its own (the TLS name stays
// the host name). A call tries them in order and succeeds as soon as one of them answers that
// the change is applied; a server that is unreachable or answers 5xx is skipped at once, and
// only when every server failed does the call wait (backoff) before the next round. A refusal
// (bad input, authentication) ends the call: the servers share their keys and membership, so
// another server would refuse it too.

// SplitServers splits a comma-separated CLB_SERVER list, dropping empty items.
func SplitServers(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// target is one server a call may go to.
type target struct {
	url *url.URL
	// hc sends to this target; it differs from the client's when a host name resolved to
	// several addresses and this target pins one of them.
	hc *http.Client
}

// targets resolves Server into the servers of a call, in order.
func (c *Client) targets(ctx context.Context, path string) ([]target, error) {
	servers := SplitServers(c.Server)
	if len(servers) == 0 {
		_, err := ParseServer(c.Server) // the single-server error message
		return nil, err
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	var out []target
	for _, s := range servers {
		base, err := ParseServer(s)
		if err != nil {
			return nil, err
		}
		u := *base
		u.Path = base.Path + path
		addrs := c.resolve(ctx, u.Hostname())
		if len(addrs) < 2 {
			out = append(out, target{url: &u, hc: hc})
			continue
		}
		for _, a := range addrs {
			out = append(out, target{url: &u, hc: pinned(hc, net.JoinHostPort(a, u.Port()))})
		}
	}
	return out, nil
}

// resolve returns the addresses of a host name when there are several (nil for an IP
// address, a name that does not resolve now, or a client whose transport cannot be pinned).
func (c *Client) resolve(ctx context.Context, host string) []string {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if c.HTTPClient != nil && c.HTTPClient.Transport != nil {
		if _, ok := c.HTTPClient.Transport.(*http.Transport); !ok {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil // the request itself reports the failure
	}
	return addrs
}

// pinned returns a client like hc whose connections all go to addr.
func pinned(hc *http.Client, addr string) *http.Client {
	base, _ := hc.Transport.(*http.Transport)
	if base == nil {
		base = http.DefaultTransport.(*http.Transport)
	}
	tr := base.Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	out := *hc
	out.Transport = tr
	return &out
}

// round is one try of every target.
type round struct {
	o outcome
	// host answered o.
	host string
	// accepted is the last not_applied answer of the round (the change is stored).
	accepted *outcome
	// maybe: some server may have made the change (it answered not_applied, or nothing).
	maybe bool
}

// attemptAll tries the targets in order until one applies the change or refuses it.
func (c *Client) attemptAll(ctx context.Context, targets []target, method, keyID string, body []byte) round {
	var r round
	for i, t := range targets {
		r.o, r.host = c.attemptWith(ctx, t.hc, method, t.url, keyID, body), t.url.Host
		if r.o.err == nil || !r.o.retry || ctx.Err() != nil {
			return r
		}
		if r.o.err.Kind == KindNotApplied {
			acc := r.o
			r.accepted = &acc
		}
		if r.o.err.Kind == KindNotApplied || r.o.err.Kind == KindUnreachable {
			r.maybe = i < len(targets)-1 || r.maybe
		}
		if i < len(targets)-1 && c.Logger != nil {
			c.Logger.Info("trying the next server", "addr", t.url.Host, "err", r.o.err)
		}
	}
	return r
}

// checkServers checks every server of a comma-separated list for the command line: https
// when tls is set and no scheme is given, plain http only to this machine unless insecure.
// It returns the list with the schemes filled in.
func checkServers(list string, tls, insecure bool) (string, error) {
	servers := SplitServers(list)
	if len(servers) == 0 {
		return "", fmt.Errorf("server is empty: want HOST, HOST:PORT or a URL")
	}
	for i, s := range servers {
		if tls && !strings.Contains(s, "://") {
			s = "https://" + s
			servers[i] = s
		}
		u, err := ParseServer(s)
		if err != nil {
			return "", err
		}
		if err := CheckTransport(u, insecure); err != nil {
			return "", err
		}
	}
	return strings.Join(servers, ","), nil
}

package agent

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"clb/internal/testutil"
)

// appCookieBackend is an HTTP member that starts a session: it sets JSESSIONID=<name>-<n>
// on a request without one, and answers "<name> <cookie it received>".
func appCookieBackend(t *testing.T, name, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := ""
		if c, err := r.Cookie("JSESSIONID"); err == nil {
			got = c.Value
		} else {
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: fmt.Sprintf("%s-%d", name, n.Add(1)), Path: "/"})
		}
		fmt.Fprintf(w, "%s %s", name, got)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// proxyEcho is a TCP member that reads a PROXY v1 line if one comes first, then one line,
// and answers "<proxy line>|<line>".
func proxyEcho(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return // a health check: connect (and PROXY header) only
				}
				proxy := ""
				if strings.HasPrefix(line, "PROXY ") {
					proxy = strings.TrimSpace(line)
					if line, err = r.ReadString('\n'); err != nil {
						return
					}
				}
				fmt.Fprintf(c, "%s|%s\n", proxy, strings.TrimSpace(line))
			}()
		}
	}()
}

// tcpRoundTrip sends one line through a front (TLS when cfg is set) and returns the answer.
func tcpRoundTrip(t *testing.T, port int, cfg *tls.Config) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	d := &net.Dialer{Timeout: 3 * time.Second}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read through %s: %v", addr, err)
	}
	return strings.TrimSpace(line)
}

// TestELBPolicies drives the policies with boto3 against real haproxy traffic: app-cookie
// stickiness follows the application's JSESSIONID (the member gets its own value back), an
// LB cookie with an expiration period gets Max-Age, ProxyProtocol on a back-end port makes
// haproxy send the PROXY header on TCP and SSL listeners, an SSL listener terminates TLS in
// front of a TCP member, and DescribeLoadBalancers pages with boto3's paginator.
func TestELBPolicies(t *testing.T) {
	e := startELB(t)
	d := e.boto3(t, awsAdminID, awsAdminSecret)
	front, other := testutil.FreePort(t), testutil.FreePort(t)
	pa, pb := testutil.FreePort(t), testutil.FreePort(t)
	appCookieBackend(t, "A", fmt.Sprintf("127.0.0.1:%d", pa))
	appCookieBackend(t, "B", fmt.Sprintf("127.0.0.1:%d", pb))
	d.run(fmt.Sprintf(`elb.create_load_balancer(LoadBalancerName="shop", AvailabilityZones=["us-east-1a"],
    Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": %d, "InstancePort": %d}, {"Protocol": "HTTP", "LoadBalancerPort": %d, "InstancePort": %d}])
elb.register_instances_with_load_balancer(LoadBalancerName="shop", Instances=[{"InstanceId": "127.0.0.1:%d"}, {"InstanceId": "127.0.0.1:%d"}])`,
		front, pa, other, pa, pa, pb))

	// App cookie: the client's session stays with the member that set the cookie.
	d.run(fmt.Sprintf(`elb.create_app_cookie_stickiness_policy(LoadBalancerName="shop", PolicyName="app", CookieName="JSESSIONID")
elb.set_load_balancer_policies_of_listener(LoadBalancerName="shop", LoadBalancerPort=%d, PolicyNames=["app"])`, front))
	if svc := e.a.config().Services["shop"]; !svc.Sticky || svc.StickyCookie != "JSESSIONID" {
		t.Fatalf("service after the app-cookie policy: sticky %v cookie %q", svc.Sticky, svc.StickyCookie)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 3 * time.Second, Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", front)
	first := awsGet(t, client, url)
	member, _, _ := strings.Cut(first, " ")
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	cookies := jar.Cookies(u)
	if len(cookies) != 1 || !strings.Contains(cookies[0].Value, "~"+member+"-") {
		t.Fatalf("the client holds %v, want JSESSIONID prefixed by haproxy's slot (SLOT~%s-N)", cookies, member)
	}
	for i := 0; i < 10; i++ {
		if got := awsGet(t, client, url); got != member+" "+member+"-1" {
			t.Fatalf("request %d with the session cookie: %q, want %q (same member, its own cookie value without haproxy's prefix)", i, got, member+" "+member+"-1")
		}
	}
	// A client without the cookie is balanced as usual: both members serve new sessions.
	if got := served(t, front, 20); got["A "] == 0 || got["B "] == 0 {
		t.Fatalf("new sessions went to %v, want both members", got)
	}
	// Another stickiness policy on the other listener: refused (one per load balancer).
	d.fails(fmt.Sprintf(`elb.create_lb_cookie_stickiness_policy(LoadBalancerName="shop", PolicyName="lbc", CookieExpirationPeriod=120)
elb.set_load_balancer_policies_of_listener(LoadBalancerName="shop", LoadBalancerPort=%d, PolicyNames=["lbc"])`, other), "InvalidConfigurationRequest")
	d.fails(`elb.delete_load_balancer_policy(LoadBalancerName="shop", PolicyName="app")`, "InvalidConfigurationRequest")
	// The LB cookie with a period, instead: CLBSRV with Max-Age.
	d.run(fmt.Sprintf(`elb.set_load_balancer_policies_of_listener(LoadBalancerName="shop", LoadBalancerPort=%d, PolicyNames=["lbc"])`, front))
	resp, err := awsProxied.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sc := resp.Header.Values("Set-Cookie"); !slices.ContainsFunc(sc, func(c string) bool {
		return strings.HasPrefix(c, "CLBSRV=") && strings.Contains(c, "Max-Age=120")
	}) {
		t.Fatalf("Set-Cookie %q, want CLBSRV with Max-Age=120", sc)
	}
	pol := d.run(`b = elb.describe_load_balancers(LoadBalancerNames=["shop"])["LoadBalancerDescriptions"][0]["Policies"]
_ = [b["AppCookieStickinessPolicies"], b["LBCookieStickinessPolicies"]]`)
	if got := fmt.Sprint(pol); got != "[[map[CookieName:JSESSIONID PolicyName:app]] [map[CookieExpirationPeriod:120 PolicyName:lbc]]]" {
		t.Fatalf("policies described %s", got)
	}

	// ProxyProtocol on the back-end port of a TCP and an SSL listener.
	tcpFront, sslFront, echoPort := testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)
	proxyEcho(t, fmt.Sprintf("127.0.0.1:%d", echoPort))
	d.run(fmt.Sprintf(`elb.create_load_balancer(LoadBalancerName="mail", AvailabilityZones=["us-east-1a"],
    Listeners=[{"Protocol": "TCP", "LoadBalancerPort": %d, "InstancePort": %d}, {"Protocol": "SSL", "LoadBalancerPort": %d, "InstanceProtocol": "TCP", "InstancePort": %d, "SSLCertificateId": "web-cert"}])
elb.register_instances_with_load_balancer(LoadBalancerName="mail", Instances=[{"InstanceId": "127.0.0.1:%d"}])`, tcpFront, echoPort, sslFront, echoPort, echoPort))
	pem, err := os.ReadFile("testdata/test-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsCfg := &tls.Config{RootCAs: pool}
	if got := tcpRoundTrip(t, tcpFront, nil); got != "|hello" {
		t.Fatalf("TCP listener without ProxyProtocol: member got %q, want no PROXY line", got)
	}
	if got := tcpRoundTrip(t, sslFront, tlsCfg); got != "|hello" {
		t.Fatalf("SSL listener: member got %q, want the plain line (TLS ends at haproxy)", got)
	}
	d.run(fmt.Sprintf(`elb.create_load_balancer_policy(LoadBalancerName="mail", PolicyName="pp", PolicyTypeName="ProxyProtocolPolicyType", PolicyAttributes=[{"AttributeName": "ProxyProtocol", "AttributeValue": "true"}])
elb.set_load_balancer_policies_for_backend_server(LoadBalancerName="mail", InstancePort=%d, PolicyNames=["pp"])`, echoPort))
	for _, c := range []struct {
		port int
		cfg  *tls.Config
	}{{tcpFront, nil}, {sslFront, tlsCfg}} {
		got := tcpRoundTrip(t, c.port, c.cfg)
		// PROXY TCP4 <client> <load balancer> <client port> <listener port>
		if want := fmt.Sprintf(" %d|hello", c.port); !strings.HasPrefix(got, "PROXY TCP4 127.0.0.1 127.0.0.1 ") || !strings.HasSuffix(got, want) {
			t.Fatalf("with ProxyProtocol, the member behind port %d got %q, want PROXY TCP4 127.0.0.1 127.0.0.1 PORT%s", c.port, got, want)
		}
	}
	desc := d.run(`b = elb.describe_load_balancers(LoadBalancerNames=["mail"])["LoadBalancerDescriptions"][0]
_ = [b["BackendServerDescriptions"], b["Policies"]["OtherPolicies"], [(l["Listener"]["Protocol"], l["Listener"]["InstanceProtocol"], l["Listener"].get("SSLCertificateId")) for l in b["ListenerDescriptions"]]]`)
	if got, want := fmt.Sprint(desc), fmt.Sprintf("[[map[InstancePort:%d PolicyNames:[pp]]] [pp] [[TCP TCP <nil>] [SSL TCP web-cert]]]", echoPort); got != want {
		t.Fatalf("described %s, want %s", got, want)
	}
	attrs := d.run(`_ = elb.describe_load_balancer_policies(LoadBalancerName="mail", PolicyNames=["pp"])["PolicyDescriptions"][0]["PolicyAttributeDescriptions"]`)
	if fmt.Sprint(attrs) != "[map[AttributeName:ProxyProtocol AttributeValue:true]]" {
		t.Fatalf("pp attributes = %v", attrs)
	}
	d.fails(`elb.set_load_balancer_policies_of_listener(LoadBalancerName="mail", LoadBalancerPort=1, PolicyNames=[])`, "ListenerNotFound")
	d.fails(fmt.Sprintf(`elb.set_load_balancer_policies_of_listener(LoadBalancerName="mail", LoadBalancerPort=%d, PolicyNames=["pp"])`, tcpFront), "InvalidConfigurationRequest")
	d.fails(`elb.create_load_balancer_policy(LoadBalancerName="mail", PolicyName="neg", PolicyTypeName="SSLNegotiationPolicyType", PolicyAttributes=[])`, "PolicyTypeNotFound")
	d.fails(`elb.create_load_balancer_policy(LoadBalancerName="mail", PolicyName="pp2", PolicyTypeName="ProxyProtocolPolicyType", PolicyAttributes=[{"AttributeName": "ProxyProtocol", "AttributeValue": "maybe"}])`, "InvalidConfigurationRequest")
	d.fails(`elb.create_load_balancer(LoadBalancerName="tls-up", AvailabilityZones=["us-east-1a"], Listeners=[{"Protocol": "SSL", "LoadBalancerPort": 1, "InstanceProtocol": "SSL", "InstancePort": 1, "SSLCertificateId": "web-cert"}])`, "InvalidConfigurationRequest")
	// Detached, the header stops; then the policy can go.
	d.run(fmt.Sprintf(`elb.set_load_balancer_policies_for_backend_server(LoadBalancerName="mail", InstancePort=%d, PolicyNames=[])
elb.delete_load_balancer_policy(LoadBalancerName="mail", PolicyName="pp")`, echoPort))
	if got := tcpRoundTrip(t, tcpFront, nil); got != "|hello" {
		t.Fatalf("after the policy was detached the member got %q", got)
	}

	// Pages: one load balancer a page, all of them in order.
	names := d.run(`_ = [b["LoadBalancerName"] for p in elb.get_paginator("describe_load_balancers").paginate(PaginationConfig={"PageSize": 1}) for b in p["LoadBalancerDescriptions"]]`)
	if fmt.Sprint(names) != "[legacy mail shop]" {
		t.Fatalf("paginated names = %v", names)
	}
	d.fails(`elb.describe_load_balancers(Marker="not-ours!")`, "ValidationError")
}

func awsGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

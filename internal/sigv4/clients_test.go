package sigv4

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The verifier against the real clients, Debian's packages (python3-boto, python3-boto3,
// awscli, python3-libcloud; `make test-deps` installs them), run with /usr/bin/python3 and
// /usr/bin/aws: each signs DescribeLoadBalancers as it always does (boto 2: GET against an
// IP, scope 0/127; botocore and the CLI: POST form; libcloud: GET on /2012-06-01/ with '+'
// for spaces), and a listener on 127.0.0.1 verifies it. A wrong secret is refused by the
// verifier, and the client reports AWS's error code.

const (
	testKeyID  = "ops"
	testSecret = "0123456789abcdef0123456789abcdef"
)

// verifyingServer answers every request with an empty DescribeLoadBalancers result when its
// signature verifies, else with AWS's ErrorResponse; it records each outcome.
type verifyingServer struct {
	addr string
	mu   sync.Mutex
	got  []outcome
}

type outcome struct {
	method, path string
	cred         Credential
	err          error
}

func startVerifyingServer(t *testing.T) *verifyingServer {
	t.Helper()
	v := New(func(id string) ([]byte, bool) {
		if id == testKeyID {
			return []byte(testSecret), true
		}
		return nil, false
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &verifyingServer{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		cred, err := v.Verify(r, body)
		s.mu.Lock()
		s.got = append(s.got, outcome{r.Method, r.URL.Path, cred, err})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		const ns = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/"
		var e *Error
		if errors.As(err, &e) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>r-1</RequestId></ErrorResponse>`, ns, e.Code, e.Msg)
			return
		}
		fmt.Fprintf(w, `<DescribeLoadBalancersResponse xmlns="%s"><DescribeLoadBalancersResult><LoadBalancerDescriptions/></DescribeLoadBalancersResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></DescribeLoadBalancersResponse>`, ns)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *verifyingServer) outcomes() []outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]outcome(nil), s.got...)
}

// client is one real client's DescribeLoadBalancers call, with the secret it signs with.
type client struct {
	name       string
	wantMethod string
	wantPath   string
	wantScope  string // region/service
	run        func(t *testing.T, addr, secret string) (string, error)
}

func python(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnv keeps the clients away from any AWS configuration of the machine's user.
func cleanEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "BOTO_CONFIG=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
}

var clients = []client{
	{name: "boto 2", wantMethod: "GET", wantPath: "/", wantScope: "0/127", run: func(t *testing.T, addr, secret string) (string, error) {
		host, port, _ := net.SplitHostPort(addr)
		return python(t, `
import sys, boto.ec2.elb, boto.exception
from boto.regioninfo import RegionInfo
c = boto.ec2.elb.ELBConnection(aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], region=RegionInfo(name="local", endpoint=sys.argv[3]), port=int(sys.argv[4]), is_secure=False)
try:
    print("ok", len(c.get_all_load_balancers()))
except boto.exception.BotoServerError as e:
    print("error", e.error_code); sys.exit(1)
`, testKeyID, secret, host, port)
	}},
	{name: "boto3", wantMethod: "POST", wantPath: "/", wantScope: "us-east-1/elasticloadbalancing", run: func(t *testing.T, addr, secret string) (string, error) {
		return python(t, `
import sys, boto3, botocore.exceptions, botocore.config
c = boto3.client("elb", endpoint_url="http://"+sys.argv[3], region_name="us-east-1", aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], config=botocore.config.Config(retries={"max_attempts": 1}))
try:
    print("ok", len(c.describe_load_balancers()["LoadBalancerDescriptions"]))
except botocore.exceptions.ClientError as e:
    print("error", e.response["Error"]["Code"]); sys.exit(1)
`, testKeyID, secret, addr)
	}},
	{name: "aws CLI", wantMethod: "POST", wantPath: "/", wantScope: "eu-west-1/elasticloadbalancing", run: func(t *testing.T, addr, secret string) (string, error) {
		cmd := exec.Command("/usr/bin/aws", "elb", "describe-load-balancers", "--endpoint-url", "http://"+addr, "--region", "eu-west-1", "--output", "json")
		cmd.Env = append(cleanEnv(), "AWS_ACCESS_KEY_ID="+testKeyID, "AWS_SECRET_ACCESS_KEY="+secret, "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=")
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), `"LoadBalancerDescriptions": []`) {
			return "ok 0", nil
		}
		return string(out), err
	}},
	{name: "libcloud", wantMethod: "GET", wantPath: "/2012-06-01/", wantScope: "us-east-1/elasticloadbalancing", run: func(t *testing.T, addr, secret string) (string, error) {
		host, port, _ := net.SplitHostPort(addr)
		return python(t, `
import sys
from libcloud.loadbalancer.providers import get_driver
from libcloud.loadbalancer.types import Provider
from libcloud.common.types import InvalidCredsError
d = get_driver(Provider.ELB)(sys.argv[1], sys.argv[2], region="us-east-1")
d.connection.host, d.connection.port, d.connection.secure = sys.argv[3], int(sys.argv[4]), False
d.connection.connect()
try:
    print("ok", len(d.list_balancers()))
except InvalidCredsError as e:
    print("error", e); sys.exit(1)
`, testKeyID, secret, host, port)
	}},
}

func TestRealClients(t *testing.T) {
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			s := startVerifyingServer(t)
			out, err := c.run(t, s.addr, testSecret)
			got := s.outcomes()
			if err != nil || !strings.Contains(out, "ok 0") {
				t.Fatalf("%s with the right secret: %v\n%s\noutcomes: %+v", c.name, err, out, got)
			}
			if len(got) != 1 || got[0].err != nil {
				t.Fatalf("outcomes = %+v, want one accepted request", got)
			}
			o := got[0]
			if o.method != c.wantMethod || o.path != c.wantPath || o.cred.KeyID != testKeyID || o.cred.Region+"/"+o.cred.Service != c.wantScope {
				t.Errorf("accepted %s %s by %q for %s/%s; want %s %s for %s", o.method, o.path, o.cred.KeyID, o.cred.Region, o.cred.Service, c.wantMethod, c.wantPath, c.wantScope)
			}
			if d := time.Since(dateOf(t, o.cred.Date)); d < 0 || d > 48*time.Hour {
				t.Errorf("credential date %s is not today", o.cred.Date)
			}

			// The same client with a wrong secret: refused by the signature check.
			out, err = c.run(t, s.addr, strings.Repeat("x", len(testSecret)))
			got = s.outcomes()[1:]
			if err == nil || !strings.Contains(out, CodeSignatureWrong) {
				t.Errorf("%s with a wrong secret: err %v, output %q; want a failure naming %s", c.name, err, out, CodeSignatureWrong)
			}
			if len(got) == 0 {
				t.Fatal("no request arrived with the wrong secret")
			}
			for _, o := range got {
				var e *Error
				if !errors.As(o.err, &e) || e.Code != CodeSignatureWrong {
					t.Errorf("wrong secret: outcome %v, want %s", o.err, CodeSignatureWrong)
				}
			}
		})
	}
}

func dateOf(t *testing.T, d string) time.Time {
	t.Helper()
	at, err := time.Parse("20060102", d)
	if err != nil {
		t.Fatalf("credential date %q: %v", d, err)
	}
	return at
}

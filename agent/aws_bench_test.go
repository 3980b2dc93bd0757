package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/internal/sigv4"
)

const benchAdminSecret = "bench-admin-secret-0123456789"

// BenchmarkAWSRegisterLatency measures, like BenchmarkRegisterLatency, the time from the first
// byte of a signed call to the first proxied 200 from the new member: the AWS front's
// RegisterInstancesWithLoadBalancer (SigV4, POST form, instance id from the registry) and, in
// the same run on the same load balancer, the native API's PUT, sample for sample. Each
// sample's member is deregistered (and drained) through the same front before the next.
func BenchmarkAWSRegisterLatency(b *testing.B) {
	front, memberPort, awsPort := freePort(b), freePort(b), freePort(b)
	// An admin key announces the instances at the backends' addresses.
	keys := filepath.Join(shortDir(b), "keys.yaml")
	writeFile(b, keys, "keys:\n  - {id: ops, secret: "+benchAdminSecret+", scope: admin}\n", 0o600)
	l := startLB(b, fmt.Sprintf("aws_listen: 127.0.0.1:%d\nkeys_file: %s\nservices:\n", awsPort, keys)+service("svc", front, memberPort, "    draining_timeout: 1s\n"))
	admin := auth.DeriveKey([]byte(benchAdminSecret))
	ips := []string{"127.0.0.51", "127.0.0.52"}
	for i, ip := range ips {
		backend(b, fmt.Sprintf("member-%d", i), fmt.Sprintf("%s:%d", ip, memberPort))
	}
	awsClient := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	b.Cleanup(awsClient.CloseIdleConnections)
	awsCall := func(form url.Values) *http.Request {
		body := form.Encode()
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", awsPort), strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		sigv4.Sign(req, []byte(body), "default", []byte(benchPassword), "us-east-1", "elasticloadbalancing", time.Now())
		return req
	}
	doAWS := func(req *http.Request) (int, string) {
		resp, err := awsClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	frontAddr := fmt.Sprintf("127.0.0.1:%d", front)
	// measure runs one sample: send req, probe until want answers, return both durations.
	measure := func(i int, want string, req *http.Request, send func(*http.Request) (int, string)) (time.Duration, time.Duration) {
		stop := make(chan struct{})
		type served struct {
			at  time.Time
			err error
		}
		got := make(chan served, 1)
		start := time.Now()
		go func() {
			at, _, err := probeUntil(frontAddr, want, 10+i%2, 10*time.Second, stop)
			got <- served{at, err}
		}()
		code, out := send(req)
		answered := time.Now()
		if code != http.StatusOK {
			close(stop)
			<-got
			b.Fatalf("sample %d: %d %s", i, code, out)
		}
		s := <-got
		if s.err != nil {
			b.Fatalf("sample %d: %v", i, s.err)
		}
		return s.at.Sub(start), answered.Sub(start)
	}
	var native, aws, awsAnswer []time.Duration
	for range b.N {
		for i := range *samples {
			ip, want := ips[i%2], fmt.Sprintf("member-%d", i%2)
			// Native: PUT the member, then DELETE it.
			name := fmt.Sprintf("n%04d", i)
			d, _ := measure(i, want, l.request("PUT", "/v1/services/svc/members/"+name, map[string]any{"address": ip, "port": memberPort}), l.do)
			native = append(native, d)
			l.must("DELETE", "/v1/services/svc/members/"+name, nil, http.StatusOK)
			// AWS: announce a fresh instance id (not measured), register it, deregister it.
			id := fmt.Sprintf("i-%04d", i)
			body := []byte(fmt.Sprintf(`{"address": %q}`, ip))
			ann, err := http.NewRequest("PUT", "http://"+l.c.api+"/v1/instances/"+id, bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			if err := auth.Sign(ann, "ops", admin, body, time.Now()); err != nil {
				b.Fatal(err)
			}
			if code, out := l.do(ann); code != http.StatusOK {
				b.Fatalf("announce %s: %d %s", id, code, out)
			}
			reg := awsCall(url.Values{"Action": {"RegisterInstancesWithLoadBalancer"}, "Version": {"2012-06-01"},
				"LoadBalancerName": {"svc"}, "Instances.member.1.InstanceId": {id}})
			d, a := measure(i, want, reg, doAWS)
			aws, awsAnswer = append(aws, d), append(awsAnswer, a)
			if code, out := doAWS(awsCall(url.Values{"Action": {"DeregisterInstancesFromLoadBalancer"}, "Version": {"2012-06-01"},
				"LoadBalancerName": {"svc"}, "Instances.member.1.InstanceId": {id}})); code != http.StatusOK {
				b.Fatalf("deregister %s: %d %s", id, code, out)
			}
		}
	}
	for _, s := range [][]time.Duration{native, aws, awsAnswer} {
		slices.Sort(s)
	}
	n := len(aws)
	nativeP99, awsP99 := percentile(native, 0.99), percentile(aws, 0.99)
	b.ReportMetric(float64(percentile(aws, 0.5).Microseconds())/1000, "aws-p50-ms")
	b.ReportMetric(float64(awsP99.Microseconds())/1000, "aws-p99-ms")
	const bench = "AWS RegisterInstancesWithLoadBalancer → first proxied 200 (runtime path)"
	figure(b, bench, fmt.Sprintf("p50 / p99 (%d samples)", n), ms(percentile(aws, 0.5))+" / "+ms(awsP99), "", false)
	figure(b, bench, fmt.Sprintf("native PUT in the same run: p50 / p99 (%d samples)", len(native)), ms(percentile(native, 0.5))+" / "+ms(nativeP99), "", false)
	figure(b, bench, "AWS p99 − native p99", ms(awsP99-nativeP99), "≤ 2 ms", awsP99-nativeP99 <= 2*time.Millisecond)
	figure(b, bench, "RegisterInstances answered (applied), p50 / p99", ms(percentile(awsAnswer, 0.5))+" / "+ms(percentile(awsAnswer, 0.99)), "", false)
}

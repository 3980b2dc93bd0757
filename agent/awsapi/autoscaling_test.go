package awsapi

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"clb/internal/sigv4"
)

// Dispatch on Version: each API answers its errors in its own namespace, names itself in
// them, and refuses register-scoped keys.
func TestVersionDispatch(t *testing.T) {
	s := testServer(100)
	for _, c := range []struct {
		version, action, key, secret string
		status                       int
		code, ns, msg                string
	}{
		{AutoScalingVersion, "DescribeAutoScalingGroups", "ops", adminSecret, 400, "UnsupportedOperation", AutoScalingNamespace, "runs no Auto Scaling groups"},
		{AutoScalingVersion, "DescribeLoadBalancers", "ops", adminSecret, 400, "InvalidAction", AutoScalingNamespace, "not an action of Auto Scaling 2011-01-01"},
		{AutoScalingVersion, "AttachInstances", "ops", adminSecret, 400, "UnsupportedOperation", AutoScalingNamespace, "does not serve AttachInstances"},
		{AutoScalingVersion, "DescribeAutoScalingGroups", "reg", regSecret, 403, "AccessDenied", AutoScalingNamespace, "needs a key with admin scope"},
		{CloudWatchVersion, "PutMetricAlarm", "ops", adminSecret, 400, "UnsupportedOperation", CloudWatchNamespace, "runs no Auto Scaling groups"},
		{CloudWatchVersion, "GetMetricStatistics", "ops", adminSecret, 400, "UnsupportedOperation", CloudWatchNamespace, "GetMetricStatistics"},
		{CloudWatchVersion, "DescribeAlarms", "reg", regSecret, 403, "AccessDenied", CloudWatchNamespace, "admin scope"},
		{"2009-05-15", "CreateOrUpdateScalingTrigger", "ops", adminSecret, 400, "NoSuchVersion", Namespace, "Auto Scaling Version=2011-01-01"},
	} {
		body := url.Values{"Action": {c.action}, "Version": {c.version}}.Encode()
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8091/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		sigv4.Sign(r, []byte(body), c.key, []byte(c.secret), "us-east-1", "autoscaling", time.Now())
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		raw, _ := io.ReadAll(w.Result().Body)
		var doc struct {
			XMLName xml.Name `xml:"ErrorResponse"`
			Error   struct{ Code, Message string }
		}
		if err := xml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s %s: %v\n%s", c.version, c.action, err, raw)
		}
		if w.Code != c.status || doc.Error.Code != c.code || doc.XMLName.Space != c.ns || !strings.Contains(doc.Error.Message, c.msg) {
			t.Errorf("%s %s as %s = %d %s %q (ns %s), want %d %s %q (ns %s)", c.version, c.action, c.key, w.Code, doc.Error.Code, doc.Error.Message, doc.XMLName.Space, c.status, c.code, c.msg, c.ns)
		}
	}
}

package sigv4

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)

func testVerifier(opts ...Option) *Verifier {
	clock := t0
	opts = append([]Option{WithClock(func() time.Time { return clock })}, opts...)
	return New(func(id string) ([]byte, bool) {
		if id == testKeyID {
			return []byte(testSecret), true
		}
		return nil, false
	}, opts...)
}

func signed(method, target, body string, at time.Time) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Host = "127.0.0.1:8091"
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	Sign(r, []byte(body), testKeyID, []byte(testSecret), "us-east-1", "elasticloadbalancing", at)
	return r
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestVerify(t *testing.T) {
	body := "Action=DescribeLoadBalancers&Version=2012-06-01"
	cases := []struct {
		name string
		req  func() *http.Request
		want string
	}{
		{"POST form", func() *http.Request { return signed("POST", "/", body, t0) }, ""},
		{"GET query with spaces as +", func() *http.Request {
			return signed("GET", "/2012-06-01/?Action=DescribeLoadBalancers&Name=a+b&Version=2012-06-01", "", t0)
		}, ""},
		{"4 min early", func() *http.Request { return signed("POST", "/", body, t0.Add(4*time.Minute)) }, ""},
		{"6 min old", func() *http.Request { return signed("POST", "/", body, t0.Add(-6*time.Minute)) }, CodeSignatureWrong},
		{"body changed", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Body = http.NoBody
			return r
		}, CodeSignatureWrong},
		{"query changed", func() *http.Request {
			r := signed("GET", "/?Action=DescribeLoadBalancers", "", t0)
			r.URL.RawQuery = "Action=DeleteLoadBalancer"
			return r
		}, CodeSignatureWrong},
		{"signed header missing", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Header.Del("Content-Type")
			return r
		}, CodeSignatureWrong},
		{"unknown key", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Credential="+testKeyID+"/", "Credential=nobody/", 1))
			return r
		}, CodeInvalidKey},
		{"no authorization", func() *http.Request { return httptest.NewRequest("GET", "/?Action=DescribeLoadBalancers", nil) }, CodeMissingToken},
		{"SigV2-style header", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Header.Set("Authorization", "AWS ops:abc")
			return r
		}, CodeIncomplete},
		{"no host in signed headers", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "content-type;host;x-amz-date", "content-type;x-amz-date", 1))
			return r
		}, CodeIncomplete},
		{"credential date not the request's", func() *http.Request {
			r := signed("POST", "/", body, t0)
			r.Header.Set("X-Amz-Date", "20261201T010000Z")
			return r
		}, CodeSignatureWrong},
		{"presigned", func() *http.Request {
			return httptest.NewRequest("GET", "/?Action=DescribeLoadBalancers&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00", nil)
		}, CodeIncomplete},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.req()
			b := make([]byte, 0, 64)
			if r.Body != nil {
				buf := make([]byte, 512)
				n, _ := r.Body.Read(buf)
				b = buf[:n]
			}
			_, err := testVerifier().Verify(r, b)
			if got := code(err); got != c.want {
				t.Errorf("Verify = %v (code %q), want code %q", err, got, c.want)
			}
		})
	}
}

// TestReplay: an accepted signature is refused the second time, until it could not be
// accepted anyway; a full memory refuses instead of forgetting.
func TestReplay(t *testing.T) {
	body := []byte("Action=DescribeLoadBalancers&Version=2012-06-01")
	v := testVerifier(WithMaxRemembered(2))
	r := signed("POST", "/", string(body), t0)
	if _, err := v.Verify(r, body); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(r, body)
	if code(err) != CodeSignatureWrong || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replay: %v, want a refusal naming the replay", err)
	}
	if _, err := v.Verify(signed("POST", "/", string(body), t0.Add(time.Second)), body); err != nil {
		t.Fatalf("a fresh signature: %v", err)
	}
	_, err = v.Verify(signed("POST", "/", string(body), t0.Add(2*time.Second)), body)
	if err == nil || !strings.Contains(err.Error(), ErrTooMany.Error()) {
		t.Fatalf("third request with room for 2: %v, want %v", err, ErrTooMany)
	}
	// Once the first two are past the window they are forgotten.
	later := t0.Add(DefaultSkew + 3*time.Second)
	v.now = func() time.Time { return later }
	if _, err := v.Verify(signed("POST", "/", string(body), later), body); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := v.seen.Len(); n != 1 {
		t.Errorf("remembered %d signatures, want 1", n)
	}
}

func TestCanonicalQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"b=2&a=1":                  "a=1&b=2",
		"a=x+y":                    "a=x%20y",
		"a=x%20y":                  "a=x%20y",
		"Name.member.1=%7E~&a=b&a": "Name.member.1=~~&a=&a=b",
		"PolicyNames=":             "PolicyNames=",
	} {
		if got := canonicalQuery(in); got != want {
			t.Errorf("canonicalQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAWSVectors: AWS's published SigV4 test suite (get-vanilla and
// get-vanilla-query-order-key-case: key AKIDEXAMPLE, region us-east-1, service "service").
func TestAWSVectors(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	for target, sig := range map[string]string{
		"/":                             "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		"/?Param2=value2&Param1=value1": "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
	} {
		r := httptest.NewRequest("GET", target, nil)
		r.Host = "example.amazonaws.com"
		r.Header.Set("X-Amz-Date", "20150830T123600Z")
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+sig)
		v := New(func(id string) ([]byte, bool) { return []byte(secret), id == "AKIDEXAMPLE" }, WithClock(func() time.Time { return at }))
		cred, err := v.Verify(r, nil)
		if err != nil || cred.KeyID != "AKIDEXAMPLE" || cred.Service != "service" {
			t.Errorf("%s: Verify = %+v, %v", target, cred, err)
		}
		// Sign produces the same signature.
		s := httptest.NewRequest("GET", target, nil)
		s.Host = "example.amazonaws.com"
		Sign(s, nil, "AKIDEXAMPLE", []byte(secret), "us-east-1", "service", at)
		if got := s.Header.Get("Authorization"); !strings.HasSuffix(got, "Signature="+sig) {
			t.Errorf("%s: Sign = %s, want signature %s", target, got, sig)
		}
	}
}

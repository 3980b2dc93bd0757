// Package awsapi is clbd's AWS front: the Classic Elastic Load Balancing Query API
// (Version=2012-06-01) on its own listener (aws_listen), so that boto, boto3, the AWS CLI and
// libcloud drive clbd unchanged but for the endpoint. A load balancer is a clb service, a
// listener a listener, an instance a member; requests are signed with AWS SigV4 using clbd's
// keys (access key id = key id, secret access key = the key's secret, the 2010 password for
// key "default").
//
// It is a front like the native API: it reads and changes the core only through the small
// interfaces of deps.go, waits on the Applier for the apply that covers a change (a
// registration answers once haproxy routes to the instance), and never imports the
// reconciler. Answers are XML in the ELB namespace; refusals are ErrorResponse documents with
// AWS's codes and statuses; every answer carries a request id (body and x-amzn-RequestId
// header), which the request's log line repeats.
//
// Actions known to ELB but not served by clbd answer 400 UnsupportedOperation naming the
// action, never a silent success; unknown actions answer InvalidAction.
package awsapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"clb/agent/api"
	"clb/internal/auth"
	"clb/internal/ratelimit"
	"clb/internal/sigv4"
)

// Namespace is the XML namespace of every answer (libcloud requires it).
const Namespace = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/"

// Version is the API version served.
const Version = "2012-06-01"

// MaxBody bounds a request body (a form of parameters).
const MaxBody = 256 << 10

// maxListMembers bounds how many members of one list parameter are read.
const maxListMembers = 1000

// Error is a refusal with AWS's code and HTTP status. Msg is sent to the client.
type Error struct {
	Status int
	Code   string
	Msg    string
	// Receiver marks a server-side fault (Type Receiver); else the caller's (Sender).
	Receiver bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func validation(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

// Server is the AWS front, an http.Handler.
type Server struct {
	d        Deps
	log      *slog.Logger
	verifier *sigv4.Verifier
	failures atomic.Uint64
	// created is when the front was built (CreatedTime of what the config file defines).
	created time.Time
}

// New builds the front over its dependencies.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{d: d, log: d.Logger, created: time.Now().UTC()}
	s.verifier = sigv4.New(func(id string) ([]byte, bool) {
		k, ok := d.Keys.Lookup(id)
		return k.Secret, ok && len(k.Secret) > 0
	})
	return s
}

// AuthFailures is the number of requests refused for their signature.
func (s *Server) AuthFailures() uint64 { return s.failures.Load() }

// request is one call being served.
type request struct {
	r      *http.Request
	id     string
	action string
	p      params
	key    string
	scope  auth.Scope
	// ns is the XML namespace of the answer: the API the Version names (ELB until known).
	ns string
}

// ServeHTTP serves every path and method: the action is in the parameters.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := &request{r: r, id: newRequestID(), ns: Namespace}
	w.Header().Set("x-amzn-RequestId", req.id)
	result, err := s.serve(w, req)
	status, code := http.StatusOK, ""
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			ae = &Error{Status: http.StatusInternalServerError, Code: "InternalFailure", Msg: err.Error(), Receiver: true}
		}
		status, code = ae.Status, ae.Code
		writeError(w, req.id, req.ns, ae)
	} else {
		writeResult(w, req.id, req.ns, req.action, result)
	}
	lvl := slog.LevelInfo
	if status >= 400 {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "aws request", "request_id", req.id, "addr", r.RemoteAddr, "key", req.key,
		"method", r.Method, "action", req.action, "status", status, "code", code, "took", time.Since(start).Round(time.Microsecond))
}

func (s *Server) serve(w http.ResponseWriter, req *request) (any, error) {
	r := req.r
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "request body is larger than %d bytes", MaxBody)
		}
		return nil, errorf(http.StatusBadRequest, "MalformedInput", "read request body: %v", err)
	}
	src := ratelimit.Source(api.SourceAddr(r))
	if wait, blocked := s.d.Limiter.Blocked(src); blocked {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		return nil, errorf(http.StatusBadRequest, "Throttling", "Rate exceeded: too many failed authentications from %s; retry after %d s", src, secs)
	}
	// The parameters are read before the signature is checked (the signature covers them
	// all) to tell read-only actions, whose identical repeats are not replays.
	p, perr := parseParams(r, body)
	verify := s.verifier.Verify
	if perr == nil && readOnly(p.get("Action")) {
		verify = s.verifier.VerifyRepeatable
	}
	cred, err := verify(r, body)
	if err != nil {
		s.d.Limiter.Take(src)
		s.failures.Add(1)
		var se *sigv4.Error
		if errors.As(err, &se) {
			return nil, errorf(http.StatusForbidden, se.Code, "%s", se.Msg)
		}
		return nil, errorf(http.StatusForbidden, sigv4.CodeSignatureWrong, "%v", err)
	}
	req.key = cred.KeyID
	key, ok := s.d.Keys.Lookup(cred.KeyID)
	if !ok { // removed by a reload since Verify
		return nil, errorf(http.StatusForbidden, sigv4.CodeInvalidKey, "The security token included in the request is invalid.")
	}
	req.scope = key.Scope
	if perr != nil {
		return nil, perr
	}
	req.p = p
	req.action = p.get("Action")
	if req.action == "" {
		return nil, errorf(http.StatusBadRequest, "MissingAction", "the request has no Action parameter")
	}
	if !validActionName(req.action) {
		a := req.action
		req.action = ""
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "%q is not a valid action", clip(a))
	}
	v := p.get("Version")
	served, ok := s.apis()[v]
	switch {
	case v == "":
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "the request has no Version parameter; clbd serves %s", servedVersions)
	case !ok:
		return nil, errorf(http.StatusBadRequest, "NoSuchVersion", "version %q is not served; clbd serves %s", clip(v), servedVersions)
	}
	req.ns = served.namespace
	h, ok := served.actions[req.action]
	if !ok {
		if served.unserved[req.action] {
			return nil, errorf(http.StatusBadRequest, "UnsupportedOperation", "clbd does not serve %s yet (see the README's AWS section for what it serves)", req.action)
		}
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "%s is not an action of %s %s", req.action, served.name, v)
	}
	if !req.scope.Admin && !served.register[req.action] {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "key %q has scope %s: %s needs a key with admin scope", req.key, req.scope, req.action)
	}
	return h(req)
}

// awsAPI is one AWS API served on the endpoint, chosen by the request's Version.
type awsAPI struct {
	name, namespace string
	actions         map[string]handler
	// register are the actions a register-scoped key may call; unserved the API's actions
	// clbd knows and does not serve.
	register, unserved map[string]bool
}

// servedVersions names the APIs and versions served, for errors.
const servedVersions = "Classic ELB Version=2012-06-01, Auto Scaling Version=2011-01-01 and CloudWatch Version=2010-08-01"

// apis are the APIs by Version: ELB (actions.go), Auto Scaling (autoscaling.go), CloudWatch
// alarms (cloudwatch.go).
func (s *Server) apis() map[string]awsAPI {
	return map[string]awsAPI{
		Version:            {name: "Elastic Load Balancing", namespace: Namespace, actions: s.actions(), register: registerActions, unserved: unserved},
		AutoScalingVersion: {name: "Auto Scaling", namespace: AutoScalingNamespace, actions: s.autoscalingActions(), unserved: autoscalingUnserved},
		CloudWatchVersion:  {name: "CloudWatch", namespace: CloudWatchNamespace, actions: s.cloudwatchActions(), unserved: cloudwatchUnserved},
	}
}

// readOnly reports whether an action only reads (Describe*): its identical repeats within
// the signature's second are served, not refused as replays.
func readOnly(action string) bool { return strings.HasPrefix(action, "Describe") }

// registerActions are the actions a register-scoped key may call, on its services only.
var registerActions = map[string]bool{
	"RegisterInstancesWithLoadBalancer":   true,
	"DeregisterInstancesFromLoadBalancer": true,
	"DescribeInstanceHealth":              true,
	"DescribeLoadBalancers":               true,
}

// unserved are ELB actions clbd knows and does not serve yet.
var unserved = map[string]bool{
	"ApplySecurityGroupsToLoadBalancer": true, "AttachLoadBalancerToSubnets": true,
	"DetachLoadBalancerFromSubnets": true, "DescribeAccountLimits": true,
}

func validActionName(a string) bool {
	if len(a) > 64 {
		return false
	}
	for _, c := range a {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// params are the request's parameters: the query, with a form body laid over it (the body
// wins). Whitespace inside names is dropped (libcloud 3.4.1 sends some with spaces).
type params map[string]string

func parseParams(r *http.Request, body []byte) (params, error) {
	p := params{}
	add := func(raw, where string) error {
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return errorf(http.StatusBadRequest, "MalformedQueryString", "%s: %v", where, err)
		}
		for k, v := range vals {
			k = strings.Join(strings.Fields(k), "")
			if len(v) > 0 {
				p[k] = v[len(v)-1]
			}
		}
		return nil
	}
	if err := add(r.URL.RawQuery, "query string"); err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if err := add(string(body), "form body"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p params) get(name string) string { return p[name] }

func (p params) has(name string) bool { _, ok := p[name]; return ok }

// required returns a parameter that must be there, with AWS's validation message.
func (p params) required(name string) (string, error) {
	v, ok := p[name]
	if !ok || v == "" {
		field := strings.ToLower(name[:1]) + name[1:]
		return "", validation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
	}
	return v, nil
}

// list returns NAME.member.1, NAME.member.2, ... up to the first missing one.
func (p params) list(name string) []string {
	var out []string
	for i := 1; i <= maxListMembers; i++ {
		v, ok := p[fmt.Sprintf("%s.member.%d", name, i)]
		if !ok {
			break
		}
		out = append(out, v)
	}
	return out
}

// structs returns NAME.member.N.FIELD as one map per N, up to the first N with no field.
func (p params) structs(name string) []map[string]string {
	var out []map[string]string
	for i := 1; i <= maxListMembers; i++ {
		prefix := fmt.Sprintf("%s.member.%d.", name, i)
		m := map[string]string{}
		for k, v := range p {
			if f, ok := strings.CutPrefix(k, prefix); ok {
				m[f] = v
			}
		}
		if len(m) == 0 {
			break
		}
		out = append(out, m)
	}
	return out
}

// xmlList is a list written as <Name><member>...</member>...</Name>, the wrapper also when
// empty (boto 2 and libcloud look lists up by their element).
type xmlList[T any] []T

// MarshalXML writes the wrapper and one member element per item.
func (l xmlList[T]) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for _, v := range l {
		if err := e.EncodeElement(v, xml.StartElement{Name: xml.Name{Local: "member"}}); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

func writeResult(w http.ResponseWriter, reqID, ns, action string, result any) {
	var b strings.Builder
	b.WriteString(xml.Header)
	e := xml.NewEncoder(&b)
	root := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: ns}}}
	_ = e.EncodeToken(root)
	res := xml.StartElement{Name: xml.Name{Local: action + "Result"}}
	if result == nil {
		_ = e.EncodeToken(res)
		_ = e.EncodeToken(res.End())
	} else if err := e.EncodeElement(result, res); err != nil {
		writeError(w, reqID, ns, &Error{Status: http.StatusInternalServerError, Code: "InternalFailure", Msg: "encode answer: " + err.Error(), Receiver: true})
		return
	}
	_ = e.EncodeElement(struct {
		RequestID string `xml:"RequestId"`
	}{reqID}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}})
	_ = e.EncodeToken(root.End())
	_ = e.Flush()
	write(w, http.StatusOK, b.String())
}

func writeError(w http.ResponseWriter, reqID, ns string, ae *Error) {
	typ := "Sender"
	if ae.Receiver {
		typ = "Receiver"
	}
	doc := struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		XMLNS   string   `xml:"xmlns,attr"`
		Error   struct {
			Type    string
			Code    string
			Message string
		}
		RequestID string `xml:"RequestId"`
	}{XMLNS: ns, RequestID: reqID}
	doc.Error.Type, doc.Error.Code, doc.Error.Message = typ, ae.Code, ae.Msg
	out, _ := xml.Marshal(doc)
	write(w, ae.Status, xml.Header+string(out))
}

func write(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// newRequestID is a random UUID (version 4), like AWS's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

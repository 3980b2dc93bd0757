package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/internal/model"
	"clb/internal/store"
)

// maxBody bounds every request body; registrations are a few hundred bytes.
const maxBody = 64 << 10

// apiError is an error with its HTTP status and machine code: the one place where statuses live.
type apiError struct {
	Status int
	Code   string
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// memberRequest is the body of register and unregister calls. Every field is optional.
type memberRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	Weight  *int   `json:"weight"`
	Zone    string `json:"zone"`
	// TTL makes the registration a lease ("30s"), see lease.go.
	TTL string `json:"ttl"`
}

// memberResponse answers register and unregister calls.
type memberResponse struct {
	Service   string       `json:"service"`
	Member    model.Member `json:"member"`
	Applied   bool         `json:"applied"`
	StatusURL string       `json:"status_url,omitempty"`
	Error     string       `json:"error,omitempty"`
	Code      string       `json:"code,omitempty"`
}

type api struct {
	a   *Agent
	log *slog.Logger
	mux *http.ServeMux
}

func newAPI(a *Agent) *api {
	h := &api{a: a, log: a.log, mux: http.NewServeMux()}
	h.handle("PUT /v1/services/{service}/members/{member}", h.putMember)
	h.handle("POST /v1/services/{service}/members", h.postMember)
	h.handle("DELETE /v1/services/{service}/members/{member}", h.deleteMember)
	h.handle("DELETE /v1/services/{service}/members", h.deleteSelf)
	h.handle("GET /v1/services", h.listServices)
	h.handle("GET /v1/services/{service}", h.getService)
	h.handle("GET /v1/status", h.getStatus)
	h.handle("PUT /v1/services/{service}", h.putService)
	h.handle("DELETE /v1/services/{service}", h.deleteService)
	h.handle("POST /v1/services/{service}/zones/{zone}/disable", h.setZone(false))
	h.handle("POST /v1/services/{service}/zones/{zone}/enable", h.setZone(true))
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.Handle("GET /metrics", a.metrics.handler())
	return h
}

// ServeHTTP answers unknown paths and methods with JSON errors, like every other refusal.
func (h *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := h.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		h.fail(w, r, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	h.fail(w, r, errorf(http.StatusNotFound, "not_found", "no such endpoint: %s", r.URL.Path))
}

// handle registers an authenticated handler: the body is read (size-limited) and the request
// signature checked before fn runs.
func (h *api) handle(pattern string, fn func(r *http.Request, body []byte) (int, any, error)) {
	admin := needsAdmin(pattern)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				h.fail(w, r, errorf(http.StatusRequestEntityTooLarge, "too_large", "request body is larger than %d bytes", maxBody))
				return
			}
			h.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "read request body: %v", err))
			return
		}
		r, ok := h.authenticate(w, r, body)
		if !ok {
			return
		}
		keyID := identity(r).KeyID
		if admin {
			if err := requireAdmin(r); err != nil {
				h.fail(w, r, err)
				return
			}
		}
		status, resp, err := fn(r, body)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if status >= 300 {
			h.log.Warn("request not applied", "addr", r.RemoteAddr, "key", keyID, "method", r.Method, "path", r.URL.Path, "status", status)
		}
		writeJSON(w, status, resp)
	})
}

func (h *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal", "%v", err)
	}
	if ae.Status != http.StatusUnauthorized {
		h.log.Warn("request refused", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Msg)
	}
	writeJSON(w, ae.Status, map[string]string{"error": ae.Msg, "code": ae.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// service returns the configured service named in the path.
func (h *api) service(r *http.Request) (string, Service, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return "", Service{}, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := requireService(r, name); err != nil {
		return "", Service{}, err
	}
	svc, ok := h.a.config().Services[name]
	if !ok {
		return "", Service{}, errorf(http.StatusNotFound, "not_found", "unknown service %q: it is not defined in clbd's config", name)
	}
	return name, svc, nil
}

func decodeMember(body []byte) (memberRequest, error) {
	var req memberRequest
	if len(strings.TrimSpace(string(body))) == 0 {
		return req, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, errorf(http.StatusBadRequest, "bad_request", "decode request body: %v", err)
	}
	if dec.More() {
		return req, errorf(http.StatusBadRequest, "bad_request", "decode request body: more than one JSON value")
	}
	return req, nil
}

// sourceAddr is the client's address as clbd sees it: the member's default address.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	return a.Unmap().WithZone("").String()
}

// member builds the member a register call describes, with the defaults of the API: the source
// address, the service's member port, weight 100, name address:port.
func (h *api) member(r *http.Request, svc Service, req memberRequest, name string) (model.Member, error) {
	m := model.Member{Name: name, Address: req.Address, Port: req.Port, Weight: model.DefaultWeight, Zone: req.Zone}
	if m.Address == "" {
		m.Address = sourceAddr(r)
	}
	if m.Port == 0 {
		m.Port = svc.MemberPort()
	}
	if req.Weight != nil {
		m.Weight = *req.Weight
	}
	if m.Name == "" {
		m.Name = req.Name
	}
	if m.Name == "" {
		// The default name is made of the address: check it first, so that the error names
		// the address the caller gave rather than a member name it did not give.
		if err := model.ValidateAddress(m.Address); err != nil {
			return m, errorf(http.StatusBadRequest, "bad_request", "%v", err)
		}
		m.Name = model.DefaultName(m.Address, m.Port)
	}
	if req.Name != "" && req.Name != m.Name {
		return m, errorf(http.StatusBadRequest, "bad_request", "body names member %q but the path names %q", req.Name, m.Name)
	}
	if err := m.Validate(); err != nil {
		return m, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	return m, nil
}

func (h *api) putMember(r *http.Request, body []byte) (int, any, error) {
	name := r.PathValue("member")
	if err := model.ValidateMemberName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	return h.register(r, body, name)
}

func (h *api) postMember(r *http.Request, body []byte) (int, any, error) {
	return h.register(r, body, "")
}

func (h *api) register(r *http.Request, body []byte, name string) (int, any, error) {
	service, svc, err := h.service(r)
	if err != nil {
		return 0, nil, err
	}
	req, err := decodeMember(body)
	if err != nil {
		return 0, nil, err
	}
	m, err := h.member(r, svc, req, name)
	if err != nil {
		return 0, nil, err
	}
	if err := h.checkMemberCap(service, m.Name); err != nil {
		return 0, nil, err
	}
	changed, err := h.saveMember(service, m, req.TTL)
	if err != nil {
		return 0, nil, storeError("save registration", err)
	}
	if changed {
		h.log.Info("member registered", "service", service, "member", m.Name, "addr", m.Address, "port", m.Port)
		h.a.metrics.registration(service, "register")
	}
	return h.await(r, service, m)
}

func (h *api) deleteMember(r *http.Request, body []byte) (int, any, error) {
	service, _, err := h.service(r)
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("member")
	if err := model.ValidateMemberName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	return h.unregister(r, service, name)
}

// deleteSelf unregisters the member with the given (or source) address and port, whatever its
// name: the 2010 clb_unregister knows only its service.
func (h *api) deleteSelf(r *http.Request, body []byte) (int, any, error) {
	service, svc, err := h.service(r)
	if err != nil {
		return 0, nil, err
	}
	req, err := decodeMember(body)
	if err != nil {
		return 0, nil, err
	}
	if req.Name != "" {
		return h.unregister(r, service, req.Name)
	}
	want, err := h.member(r, svc, req, "")
	if err != nil {
		return 0, nil, err
	}
	for _, m := range h.a.store.Snapshot().Members[service] {
		if m.Address == want.Address && m.Port == want.Port {
			return h.unregister(r, service, m.Name)
		}
	}
	return 0, nil, errorf(http.StatusNotFound, "not_found", "no member with address %s and port %d in service %s", want.Address, want.Port, service)
}

func (h *api) unregister(r *http.Request, service, name string) (int, any, error) {
	if err := model.ValidateMemberName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	m, err := h.a.store.Delete(service, name)
	if errors.Is(err, store.ErrNotFound) {
		// Not registered. A retried unregister may be the caller's second try after a 503:
		// answer 404 only once haproxy runs a config without the member, so that 404 always
		// means "not registered, and not routed to".
		if status, resp, err := h.awaitFor(r, service, model.Member{Name: name}, h.a.rec.triggerFor(name)); err != nil || status != http.StatusOK {
			return status, resp, err
		}
		return 0, nil, errorf(http.StatusNotFound, "not_found", "member %q is not registered in service %s", name, service)
	}
	if err != nil {
		return 0, nil, storeError("save unregistration", err)
	}
	h.log.Info("member unregistered", "service", service, "member", name)
	h.a.metrics.registration(service, "unregister")
	return h.awaitFor(r, service, m, h.a.rec.triggerFor(name))
}

// await waits for the reconciler to apply the change (or answers 202 at once with ?wait=false).
func (h *api) await(r *http.Request, service string, m model.Member) (int, any, error) {
	return h.awaitFor(r, service, m, h.a.rec.trigger())
}

// awaitFor is await for a trigger the caller made.
func (h *api) awaitFor(r *http.Request, service string, m model.Member, done <-chan result) (int, any, error) {
	resp := memberResponse{Service: service, Member: m, StatusURL: "/v1/status"}
	if r.URL.Query().Get("wait") == "false" {
		return http.StatusAccepted, resp, nil
	}
	notApplied, err := h.wait(r, done)
	if err != nil {
		return 0, nil, err
	}
	if notApplied != nil {
		resp.Error, resp.Code = "change saved but not applied: "+notApplied.Error(), "not_applied"
		return http.StatusServiceUnavailable, resp, nil
	}
	resp.Applied, resp.StatusURL = true, ""
	return http.StatusOK, resp, nil
}

// wait waits for the apply that covers a change, bounded by request_timeout. notApplied is why
// the stored change did not reach haproxy; err is for a caller that went away.
func (h *api) wait(r *http.Request, done <-chan result) (notApplied, err error) {
	timeout := time.NewTimer(h.a.config().RequestTimeout)
	defer timeout.Stop()
	select {
	case res := <-done:
		return res.Err, nil
	case <-timeout.C:
		return errors.New("timed out waiting for haproxy; it will be applied later"), nil
	case <-r.Context().Done():
		return nil, errorf(http.StatusServiceUnavailable, "not_applied", "request cancelled before the change was applied")
	}
}

type serviceView struct {
	Name      string       `json:"name"`
	Listeners []Listener   `json:"listeners"`
	Balance   string       `json:"balance"`
	Sticky    bool         `json:"sticky"`
	Members   []memberView `json:"members"`
}

// memberView is a member with its health as haproxy last reported it (first listener's
// backend; "unknown" without a runtime API).
type memberView struct {
	model.Member
	Health string `json:"health"`
}

func (h *api) views() []serviceView { return h.a.views(h.a.rec.healthSnapshot()) }

func (a *Agent) views(health map[string]map[string]string) []serviceView {
	cfg := a.config()
	snap := a.store.Snapshot()
	var out []serviceView
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		svc := cfg.Services[name]
		backend := name + "_" + strconv.Itoa(svc.Listeners[0].Port)
		members := []memberView{}
		for _, m := range snap.Members[name] {
			st := health[backend][m.Name]
			if st == "" {
				st = healthUnknown
			}
			members = append(members, memberView{Member: m, Health: st})
		}
		out = append(out, serviceView{Name: name, Listeners: svc.Listeners, Balance: svc.Balance, Sticky: svc.Sticky, Members: members})
	}
	return out
}

func (h *api) listServices(r *http.Request, _ []byte) (int, any, error) {
	// A register key sees the services of its scope only.
	views := slices.DeleteFunc(h.views(), func(v serviceView) bool { return !identity(r).Scope.AllowsService(v.Name) })
	return http.StatusOK, map[string]any{"services": views}, nil
}

func (h *api) getService(r *http.Request, _ []byte) (int, any, error) {
	name, _, err := h.service(r)
	if err != nil {
		return 0, nil, err
	}
	for _, v := range h.views() {
		if v.Name == name {
			return http.StatusOK, v, nil
		}
	}
	return 0, nil, errorf(http.StatusNotFound, "not_found", "unknown service %q", name)
}

func (h *api) getStatus(r *http.Request, _ []byte) (int, any, error) {
	return http.StatusOK, h.a.status(), nil
}

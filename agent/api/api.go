// Package api is clbd's native JSON API (SPEC §2): registration, services, zones and status
// under /v1, every call signed. It is a thin front over the core: it validates and
// authenticates, changes the membership or the definitions through the interfaces of deps.go,
// and waits for the apply that covers the change. It never renders haproxy.cfg or talks to
// haproxy; it does not import the reconciler.
package api

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

	"sync/atomic"

	"clb/agent/config"
	"clb/internal/model"
	"clb/internal/store"
)

// MaxBody bounds every request body; registrations are a few hundred bytes.
const MaxBody = 64 << 10

// Error is an error with its HTTP status and machine code: the one place where statuses live.
// Err, when set, is the cause (errors.Is sees through it).
type Error struct {
	Status int
	Code   string
	Msg    string
	Err    error
	// RetryAfter, when set, is sent as Retry-After (seconds).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
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
	// CPU is the member machine's CPU use in percent (0-100), sent with lease renewals by
	// clb_register --keepalive; Auto Scaling's CPUUtilization is its mean over a group.
	CPU *float64 `json:"cpu,omitempty"`
}

// memberResponse answers register and unregister calls.
type memberResponse struct {
	Service string       `json:"service"`
	Member  model.Member `json:"member"`
	// Members lists every member an unregistration by address took out, when it was more
	// than one.
	Members   []model.Member `json:"members,omitempty"`
	Applied   bool           `json:"applied"`
	StatusURL string         `json:"status_url,omitempty"`
	Error     string         `json:"error,omitempty"`
	Code      string         `json:"code,omitempty"`
}

// Server is the API, an http.Handler.
type Server struct {
	d   Deps
	log *slog.Logger
	mux *http.ServeMux
	// failures counts refused authentications; limited counts requests refused with 429.
	failures atomic.Uint64
	limited  atomic.Uint64
}

// New builds the API over its dependencies.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.OnChange == nil {
		d.OnChange = func(string, string) {}
	}
	h := &Server{d: d, log: d.Logger, mux: http.NewServeMux()}
	h.handle("PUT /v1/services/{service}/members/{member}", h.putMember)
	h.handle("POST /v1/services/{service}/members", h.postMember)
	h.handle("DELETE /v1/services/{service}/members/{member}", h.deleteMember)
	h.handle("DELETE /v1/services/{service}/members", h.deleteSelf)
	h.handle("GET /v1/services", h.listServices)
	h.handle("GET /v1/services/{service}", h.getService)
	h.handle("GET /v1/status", h.getStatus)
	h.handle("GET /v1/stats", h.getStats)
	h.handle("PUT /v1/services/{service}", h.putService)
	h.handle("DELETE /v1/services/{service}", h.deleteService)
	h.handle("POST /v1/services/{service}/zones/{zone}/disable", h.setZone(false))
	h.handle("POST /v1/services/{service}/zones/{zone}/enable", h.setZone(true))
	h.routeGateways()
	if d.Instances != nil {
		h.handle("PUT /v1/instances/{id}", h.putInstance)
		h.handle("GET /v1/instances", h.listInstances)
	}
	if d.Groups != nil {
		h.handle("GET /v1/groups", h.listGroups)
		h.handle("GET /v1/groups/{group}", h.getGroup)
		h.handle("PUT /v1/groups/{group}/desired_capacity", h.setDesired)
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if d.Metrics != nil {
		h.mux.Handle("GET /metrics", d.Metrics)
	}
	return h
}

// ServeHTTP answers unknown paths and methods with JSON errors, like every other refusal. It
// authenticates them first: an unsigned call learns nothing of the routes (401, not 404 or
// 405), and a failed signature counts in the rate limiter like on any endpoint.
func (h *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	if _, ok := h.authenticate(w, r, body); !ok {
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
func (h *Server) handle(pattern string, fn func(r *http.Request, body []byte) (int, any, error)) {
	h.handleSized(pattern, MaxBody, fn)
}

// handleSized is handle with a body limit of its own (gateway definitions are larger).
func (h *Server) handleSized(pattern string, limit int64, fn func(r *http.Request, body []byte) (int, any, error)) {
	admin := needsAdmin(pattern)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		body, ok := h.readBodyN(w, r, limit)
		if !ok {
			return
		}
		r, ok = h.authenticate(w, r, body)
		if !ok {
			return
		}
		keyID := Identity(r).KeyID
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

// readBody reads the request body, bounded by MaxBody; on failure it has answered.
func (h *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return h.readBodyN(w, r, MaxBody)
}

// readBodyN is readBody bounded by limit.
func (h *Server) readBodyN(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, r, errorf(http.StatusRequestEntityTooLarge, "too_large", "request body is larger than %d bytes", limit))
			return nil, false
		}
		h.fail(w, r, errorf(http.StatusBadRequest, "bad_request", "read request body: %v", err))
		return nil, false
	}
	return body, true
}

func (h *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal", "%v", err)
	}
	if ae.Status != http.StatusUnauthorized {
		h.log.Warn("request refused", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Msg)
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
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
func (h *Server) service(r *http.Request) (string, config.Service, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return "", config.Service{}, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := requireService(r, name); err != nil {
		return "", config.Service{}, err
	}
	svc, ok := h.d.Config().Services[name]
	if !ok {
		return "", config.Service{}, errorf(http.StatusNotFound, "not_found", "unknown service %q: it is not defined in clbd's config", name)
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

// SourceAddr is the client's address as clbd sees it: the member's default address.
func SourceAddr(r *http.Request) string {
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
func (h *Server) member(r *http.Request, svc config.Service, req memberRequest, name string) (model.Member, error) {
	m := model.Member{Name: name, Address: req.Address, Port: req.Port, Weight: model.DefaultWeight, Zone: req.Zone}
	if m.Address == "" {
		m.Address = SourceAddr(r)
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

func (h *Server) putMember(r *http.Request, body []byte) (int, any, error) {
	name := r.PathValue("member")
	if err := model.ValidateMemberName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	return h.register(r, body, name)
}

func (h *Server) postMember(r *http.Request, body []byte) (int, any, error) {
	return h.register(r, body, "")
}

func (h *Server) register(r *http.Request, body []byte, name string) (int, any, error) {
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
	if req.CPU != nil && (*req.CPU < 0 || *req.CPU > 100 || *req.CPU != *req.CPU) {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "cpu %v: want a percentage 0-100", *req.CPU)
	}
	changed, err := h.saveMember(service, m, req.TTL)
	if err != nil {
		return 0, nil, h.memberStoreError(r, "save registration", err)
	}
	if req.CPU != nil && h.d.OnCPU != nil {
		h.d.OnCPU(service, m.Name, *req.CPU)
	}
	if changed {
		h.log.Info("member registered", "service", service, "member", m.Name, "addr", m.Address, "port", m.Port)
		h.d.OnChange(service, "register")
	}
	return h.await(r, service, m)
}

func (h *Server) deleteMember(r *http.Request, body []byte) (int, any, error) {
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

// deleteSelf unregisters the members with the given (or source) address and port, whatever
// their names: the 2010 clb_unregister knows only its service. The machine is leaving, so
// every member at that address and port goes (one registered twice, under its default name and
// with --name, is not left routed); the answer comes once none of them is routed any more.
func (h *Server) deleteSelf(r *http.Request, body []byte) (int, any, error) {
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
	var names []string
	for _, m := range h.d.Members.Snapshot().Members[service] {
		if m.Address == want.Address && m.Port == want.Port {
			names = append(names, m.Name)
		}
	}
	switch len(names) {
	case 0:
		return 0, nil, errorf(http.StatusNotFound, "not_found", "no member with address %s and port %d in service %s", want.Address, want.Port, service)
	case 1:
		return h.unregister(r, service, names[0])
	}
	var removed []model.Member
	var waits []<-chan error
	for _, name := range names {
		m, err := h.d.Members.Delete(service, name)
		if errors.Is(err, store.ErrNotFound) {
			continue // gone meanwhile: its own unregister waits for it
		}
		if err != nil {
			return 0, nil, h.memberStoreError(r, "save unregistration", err)
		}
		h.log.Info("member unregistered", "service", service, "member", name, "addr", m.Address, "port", m.Port)
		h.d.OnChange(service, "unregister")
		removed = append(removed, m)
		waits = append(waits, h.d.Applier.TriggerFor(name))
	}
	if len(removed) == 0 {
		return 0, nil, errorf(http.StatusNotFound, "not_found", "no member with address %s and port %d in service %s", want.Address, want.Port, service)
	}
	status, resp, err := h.awaitFor(r, service, removed[0], joinWaits(waits))
	if mr, ok := resp.(memberResponse); ok {
		mr.Members = removed
		resp = mr
	}
	return status, resp, err
}

// joinWaits is one outcome for several applies: the first failure, or nil once all are done.
func joinWaits(waits []<-chan error) <-chan error {
	out := make(chan error, 1)
	go func() {
		for _, w := range waits {
			if err := <-w; err != nil {
				out <- err
				return
			}
		}
		out <- nil
	}()
	return out
}

func (h *Server) unregister(r *http.Request, service, name string) (int, any, error) {
	if err := model.ValidateMemberName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	m, err := h.d.Members.Delete(service, name)
	if errors.Is(err, store.ErrNotFound) {
		// Not registered. A retried unregister may be the caller's second try after a 503:
		// answer 404 only once haproxy runs a config without the member, so that 404 always
		// means "not registered, and not routed to".
		if status, resp, err := h.awaitFor(r, service, model.Member{Name: name}, h.d.Applier.TriggerFor(name)); err != nil || status != http.StatusOK {
			return status, resp, err
		}
		return 0, nil, errorf(http.StatusNotFound, "not_found", "member %q is not registered in service %s", name, service)
	}
	if err != nil {
		return 0, nil, h.memberStoreError(r, "save unregistration", err)
	}
	h.log.Info("member unregistered", "service", service, "member", name)
	h.d.OnChange(service, "unregister")
	return h.awaitFor(r, service, m, h.d.Applier.TriggerFor(name))
}

// await waits for the reconciler to apply the change (or answers 202 at once with ?wait=false).
func (h *Server) await(r *http.Request, service string, m model.Member) (int, any, error) {
	return h.awaitFor(r, service, m, h.d.Applier.Trigger())
}

// awaitFor is await for a trigger the caller made.
func (h *Server) awaitFor(r *http.Request, service string, m model.Member, done <-chan error) (int, any, error) {
	resp := memberResponse{Service: service, Member: m, StatusURL: "/v1/status"}
	status, notApplied, err := h.settle(r, done)
	switch {
	case err != nil:
		return 0, nil, err
	case notApplied != nil:
		resp.Error, resp.Code = "change saved but not applied: "+notApplied.Error(), "not_applied"
	case status == http.StatusOK:
		resp.Applied, resp.StatusURL = true, ""
	}
	return status, resp, nil
}

// settle waits for the apply of a stored change (unless the caller asked ?wait=false) and says
// how to answer: 202 not waited for, 200 applied, or 503 with why it was not applied.
func (h *Server) settle(r *http.Request, done <-chan error) (status int, notApplied, err error) {
	if r.URL.Query().Get("wait") == "false" {
		return http.StatusAccepted, nil, nil
	}
	notApplied, err = h.wait(r, done)
	switch {
	case err != nil:
		return 0, nil, err
	case notApplied != nil:
		return http.StatusServiceUnavailable, notApplied, nil
	}
	return http.StatusOK, nil, nil
}

// wait waits for the apply that covers a change, bounded by request_timeout. notApplied is why
// the stored change did not reach haproxy; err is for a caller that went away.
func (h *Server) wait(r *http.Request, done <-chan error) (notApplied, err error) {
	timeout := time.NewTimer(h.d.Config().RequestTimeout)
	defer timeout.Stop()
	select {
	case err := <-done:
		return err, nil
	case <-timeout.C:
		return errors.New("timed out waiting for haproxy; it will be applied later"), nil
	case <-r.Context().Done():
		return nil, errorf(http.StatusServiceUnavailable, "not_applied", "request cancelled before the change was applied")
	}
}

// ServiceView is a service as GET /v1/services shows it.
type ServiceView struct {
	Name      string            `json:"name"`
	Listeners []config.Listener `json:"listeners"`
	Balance   string            `json:"balance"`
	Sticky    bool              `json:"sticky"`
	// StickyCookie is the application cookie a sticky service follows ("": haproxy's CLBSRV).
	StickyCookie string `json:"sticky_cookie,omitempty"`
	// Zones are the zones of the service's members and the disabled ones, sorted, with
	// whether each takes traffic.
	Zones   []ZoneView   `json:"zones"`
	Members []MemberView `json:"members"`
	// Draining are the members that left and whose connections haproxy still drains.
	Draining []string `json:"draining"`
}

// ZoneView is a zone of a service.
type ZoneView struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
	Members int    `json:"members"`
}

// MemberView is a member with its health as haproxy last reported it ("unknown" without a
// runtime API, or before the first report) and its lease, if it has one.
type MemberView struct {
	model.Member
	Health string `json:"health"`
	// LeaseTTL is the lease's length for a leased member ("" for a permanent one);
	// LeaseExpires when it ends, where the store knows (not on etcd, which expires leases
	// itself).
	LeaseTTL     string     `json:"lease_ttl,omitempty"`
	LeaseExpires *time.Time `json:"lease_expires,omitempty"`
}

// HealthUnknown is the health of a member haproxy has not reported on.
const HealthUnknown = "unknown"

// ViewInput is what Views shows: the running config, the membership and what haproxy and
// the reconciler report.
type ViewInput struct {
	Config   *config.Config
	Snapshot store.Snapshot
	Leases   map[string]map[string]store.Lease
	Health   map[string]map[string]string
	Draining map[string][]string
}

// Views lists the services of the config with their zones, members, health and leases, sorted
// by name.
func Views(in ViewInput) []ServiceView {
	var out []ServiceView
	cfg := in.Config
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		svc := cfg.Services[name]
		members := []MemberView{}
		zones := map[string]int{}
		for _, m := range in.Snapshot.Members[name] {
			st := in.Health[name][m.Name]
			if st == "" {
				st = HealthUnknown
			}
			v := MemberView{Member: m, Health: st}
			if l, ok := in.Leases[name][m.Name]; ok {
				v.LeaseTTL = l.TTL.String()
				if !l.Expires.IsZero() {
					exp := l.Expires.UTC()
					v.LeaseExpires = &exp
				}
			}
			members = append(members, v)
			if m.Zone != "" {
				zones[m.Zone]++
			}
		}
		for _, z := range cfg.DisabledZones[name] {
			zones[z] += 0
		}
		zv := []ZoneView{}
		for _, z := range slices.Sorted(maps.Keys(zones)) {
			zv = append(zv, ZoneView{Name: z, Enabled: !slices.Contains(cfg.DisabledZones[name], z), Members: zones[z]})
		}
		draining := append([]string{}, in.Draining[name]...)
		out = append(out, ServiceView{Name: name, Listeners: svc.Listeners, Balance: svc.Balance, Sticky: svc.Sticky,
			StickyCookie: svc.StickyCookie, Zones: zv, Members: members, Draining: draining})
	}
	return out
}

func (h *Server) views() []ServiceView {
	return Views(ViewInput{Config: h.d.Config(), Snapshot: h.d.Members.Snapshot(), Leases: h.d.Members.Leases(),
		Health: h.d.Status.Health(), Draining: h.d.Status.Draining()})
}

func (h *Server) listServices(r *http.Request, _ []byte) (int, any, error) {
	// A register key sees the services of its scope only.
	views := slices.DeleteFunc(h.views(), func(v ServiceView) bool { return !Identity(r).Scope.AllowsService(v.Name) })
	return http.StatusOK, map[string]any{"services": views}, nil
}

func (h *Server) getService(r *http.Request, _ []byte) (int, any, error) {
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

func (h *Server) getStatus(r *http.Request, _ []byte) (int, any, error) {
	return http.StatusOK, h.d.Status.Status(), nil
}

// saveMember stores a registration: a lease when the request has a TTL, else a permanent
// member (which also ends a lease the member had). It reports whether the stored state changed.
func (h *Server) saveMember(service string, m model.Member, ttl string) (bool, error) {
	d, err := h.d.Config().LeaseTTL(ttl)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if d == 0 {
		return h.d.Members.Put(service, m)
	}
	changed, _, err := h.d.Members.PutLease(service, m, d, time.Now())
	return changed, err
}

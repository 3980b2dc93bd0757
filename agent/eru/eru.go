// Package eru is the Eru elb adapter, a front of clbd on its own listener (eru_listen): the
// admin API of projecteru2/elb (`/__erulb__/domain`, `/__erulb__/upstream`,
// `/__erulb__/dump`) with Eru's JSON shapes, so that Eru's clients (elb.py, citadel) drive
// clb unchanged but for the address. An Eru domain is a domain of a gateway whose routes are
// compiled from the Eru rule set (gateway.CompileEru); an Eru upstream is a clb service and
// its servers are the service's members.
//
// clb is stricter than Eru, deliberately (the README's "Eru elb adapter" section lists every
// difference): rule sets are validated and compiled before anything is saved (400
// {"msg": reason}), every change is answered once haproxy runs it, upstream options are
// parsed and unknown ones refused, and every refusal has a body.
package eru

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/gateway"
	"clb/internal/model"
	"clb/internal/store"
)

// MaxBody bounds a request body: a domain's rule set of a few hundred rules, or the servers
// of many upstreams, fit well within it.
const MaxBody = 4 << 20

// Server serves the adapter.
type Server struct {
	d   Deps
	log *slog.Logger
	// routes by exact path (no redirects for unclean paths: every answer is JSON)
	routes map[string]http.HandlerFunc
}

// New makes the adapter over d.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{d: d, log: d.Logger}
	s.routes = map[string]http.HandlerFunc{
		"/__erulb__/domain":   s.methods(map[string]handler{"GET": s.getDomains, "PUT": s.putDomains, "DELETE": s.deleteDomains}),
		"/__erulb__/upstream": s.methods(map[string]handler{"GET": s.getUpstreams, "PUT": s.putUpstreams, "DELETE": s.deleteUpstreams}),
		"/__erulb__/dump":     s.methods(map[string]handler{"PUT": s.dump}),
	}
	return s
}

// Error is a refusal: its status and the sentence in {"msg": ...}.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func errorf(status int, format string, a ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, a...)}
}

type handler func(r *http.Request, body []byte) (any, error)

// ok is Eru's answer to a change.
type ok struct {
	Msg      string   `json:"msg"`
	Warnings []string `json:"warnings,omitempty"`
}

func writeMsg(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ok{Msg: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP checks who calls, then serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.allowed(r); err != nil {
		s.log.Warn("eru request refused", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", err.Status, "err", err.Msg)
		writeMsg(w, err.Status, err.Msg)
		return
	}
	h, found := s.routes[r.URL.Path]
	if !found {
		writeMsg(w, http.StatusNotFound, "no such endpoint: the Eru adapter serves /__erulb__/domain, /__erulb__/upstream and /__erulb__/dump")
		return
	}
	h(w, r)
}

// allowed lets loopback clients and those of eru_allow in, and then asks for the token
// when eru_token_file is set.
func (s *Server) allowed(r *http.Request) *Error {
	cfg := s.d.Config()
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	a, perr := netip.ParseAddr(host)
	if err != nil || perr != nil {
		return errorf(http.StatusForbidden, "cannot tell the client's address")
	}
	a = a.Unmap()
	if !a.IsLoopback() && !slices.ContainsFunc(cfg.EruAllowed(), func(p netip.Prefix) bool { return p.Contains(a) }) {
		return errorf(http.StatusForbidden, "%s may not call the Eru adapter: loopback only, or the networks of eru_allow", a)
	}
	if cfg.EruTokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(cfg.EruTokenFile)
	want := strings.TrimSpace(string(b))
	if err != nil || want == "" {
		s.log.Error("eru_token_file unreadable or empty: every request is refused", "path", cfg.EruTokenFile, "err", err)
		return errorf(http.StatusServiceUnavailable, "the adapter's token file cannot be read")
	}
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) != 1 {
		return errorf(http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer TOKEN, eru_token_file)")
	}
	return nil
}

func (s *Server) methods(hs map[string]handler) http.HandlerFunc {
	allow := strings.Join(slices.Sorted(maps.Keys(hs)), ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h, found := hs[r.Method]
		var v any
		var err error
		if !found {
			w.Header().Set("Allow", allow)
			err = errorf(http.StatusMethodNotAllowed, "method %s: %s takes %s", r.Method, r.URL.Path, allow)
		} else {
			var body []byte
			body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
			var tooBig *http.MaxBytesError
			switch {
			case errors.As(err, &tooBig):
				err = errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", MaxBody)
			case err != nil:
				err = errorf(http.StatusBadRequest, "read request body: %v", err)
			default:
				v, err = h(r, body)
			}
		}
		status := http.StatusOK
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Status: http.StatusInternalServerError, Msg: err.Error()}
			}
			status, v = e.Status, ok{Msg: e.Msg}
		}
		writeJSON(w, status, v)
		lvl := slog.LevelInfo
		if status >= 400 {
			lvl = slog.LevelWarn
		}
		s.log.Log(r.Context(), lvl, "eru request", "addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", status,
			"took", time.Since(start).Round(time.Microsecond), "err", errMsg(err))
	}
}

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// decode reads a JSON body into v: an empty body is 400 (as in Eru), so is bad JSON (a 500
// in Eru) and a field clb does not know.
func decode(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return errorf(http.StatusBadRequest, "empty body: want JSON")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "body: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "body: more than one JSON value")
	}
	return nil
}

// wait waits for the apply of saved changes, bounded by request_timeout: 503 when haproxy
// does not run them in time (the change is saved and is applied later). With ?wait=false
// (not an Eru parameter; Eru always answers at once) the answer comes once the change is
// saved.
func (s *Server) wait(r *http.Request, done ...<-chan error) error {
	if r.URL.Query().Get("wait") == "false" {
		return nil
	}
	t := time.NewTimer(s.d.Config().RequestTimeout)
	defer t.Stop()
	for _, c := range done {
		var err error
		select {
		case err = <-c:
		case <-t.C:
			err = errors.New("timed out waiting for haproxy; it will be applied later")
		case <-r.Context().Done():
			err = errors.New("request cancelled")
		}
		if err != nil {
			return errorf(http.StatusServiceUnavailable, "saved but not applied: %v", err)
		}
	}
	return nil
}

// coreError maps the core's errors to statuses.
func coreError(what string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if what != "" && !strings.HasPrefix(msg, what+":") {
		msg = what + ": " + msg
	}
	switch {
	case errors.Is(err, gateway.ErrInvalid), errors.Is(err, model.ErrInvalid):
		return errorf(http.StatusBadRequest, "%s", msg)
	case errors.Is(err, gateway.ErrUnknownService):
		return errorf(http.StatusConflict, "%s", msg)
	case errors.Is(err, defs.ErrFileGateway), errors.Is(err, defs.ErrFileService), errors.Is(err, defs.ErrInvalid):
		return errorf(http.StatusConflict, "%s", msg)
	case errors.Is(err, defs.ErrNoGateway), errors.Is(err, defs.ErrNotDefined):
		return errorf(http.StatusNotFound, "%s", msg)
	case errors.Is(err, store.ErrNotSaved), errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "not saved: %s", msg)
	}
	return errors.New(msg)
}

// dump is Eru's "write the in-memory state to etcd". clb saves every change durably before
// it answers, so there is nothing left to write: it answers OK once what is saved is
// applied.
func (s *Server) dump(r *http.Request, _ []byte) (any, error) {
	if err := s.wait(r, s.d.Applier.Trigger()); err != nil {
		return nil, err
	}
	return ok{Msg: "OK"}, nil
}

// --- domains

// domainKey is where an Eru domain key ("host" or "host:port") lives: a gateway and a host.
type domainKey struct{ gateway, host string }

// resolve finds the gateway of an Eru domain key: with a port, the gateway whose bind has
// that port (eru_gateway among several); without, eru_gateway, or the only gateway. The
// host is matched without port and case, so it is stored lower-cased.
func resolve(cfg *config.Config, key string) (domainKey, error) {
	host, port := key, 0
	if h, p, err := net.SplitHostPort(key); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return domainKey{}, errorf(http.StatusBadRequest, "domain %q: port %q: want 1-65535", model.Clip(key, 80), model.Clip(p, 10))
		}
		host, port = h, n
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !gateway.ValidHost(host) {
		return domainKey{}, errorf(http.StatusBadRequest, "domain %q: want a host name or an IP address, with an optional :port", model.Clip(key, 80))
	}
	names := slices.Sorted(maps.Keys(cfg.Gateways))
	if port != 0 {
		var on []string
		for _, n := range names {
			if _, p, err := config.SplitBind(cfg.Gateways[n].Bind); err == nil && p == port {
				on = append(on, n)
			}
		}
		switch {
		case len(on) == 1:
			return domainKey{on[0], host}, nil
		case len(on) > 1 && slices.Contains(on, cfg.EruGateway):
			return domainKey{cfg.EruGateway, host}, nil
		case len(on) > 1:
			return domainKey{}, errorf(http.StatusBadRequest, "domain %q: gateways %s all listen on port %d; set eru_gateway to one of them", model.Clip(key, 80), strings.Join(on, ", "), port)
		}
		return domainKey{}, errorf(http.StatusNotFound, "domain %q: no gateway listens on port %d", model.Clip(key, 80), port)
	}
	switch {
	case cfg.EruGateway != "":
		if _, found := cfg.Gateways[cfg.EruGateway]; !found {
			return domainKey{}, errorf(http.StatusNotFound, "domain %q: eru_gateway %s is not defined", model.Clip(key, 80), cfg.EruGateway)
		}
		return domainKey{cfg.EruGateway, host}, nil
	case len(names) == 1:
		return domainKey{names[0], host}, nil
	case len(names) == 0:
		return domainKey{}, errorf(http.StatusNotFound, "domain %q: no gateway is defined (gateways: in the config file, or PUT /v1/gateways/NAME)", model.Clip(key, 80))
	}
	return domainKey{}, errorf(http.StatusBadRequest, "domain %q: %d gateways and no eru_gateway: name the port (host:port) or set eru_gateway", model.Clip(key, 80), len(names))
}

// keyOf is the Eru key GET shows for a domain: its host, with the gateway's port unless it
// is the gateway a plain host goes to.
func keyOf(cfg *config.Config, gw, host string) string {
	if k, err := resolve(cfg, host); err == nil && k.gateway == gw {
		return host
	}
	if _, p, err := config.SplitBind(cfg.Gateways[gw].Bind); err == nil {
		return net.JoinHostPort(host, strconv.Itoa(p))
	}
	return host
}

func (s *Server) getDomains(*http.Request, []byte) (any, error) {
	cfg := s.d.Config()
	out := map[string]*gateway.EruRules{}
	for _, gw := range slices.Sorted(maps.Keys(cfg.Gateways)) {
		for host, d := range cfg.Gateways[gw].Domains {
			if d.Eru != nil {
				out[keyOf(cfg, gw, host)] = d.Eru
			}
		}
	}
	return out, nil
}

// anyUpstream accepts every servername that can be a clb service: the structure of a rule
// set is checked with it before the services it names are created.
type anyUpstream struct{}

func (anyUpstream) Upstream(name string) (string, error) {
	if err := model.ValidateServiceName(strings.ToLower(name)); err != nil {
		return "", fmt.Errorf("servername %q: an upstream name (Eru's literal host:port backends are not served): %w", model.Clip(name, 80), err)
	}
	return strings.ToLower(name) + "_80", nil
}

// servernames are the upstreams a rule set's backend rules name, lower-cased.
func servernames(r gateway.EruRules) []string {
	var out []string
	for _, rule := range r.Rules {
		if rule.Type != "backend" {
			continue
		}
		if n, ok := rule.Args["servername"].(string); ok && !slices.Contains(out, strings.ToLower(n)) {
			out = append(out, strings.ToLower(n))
		}
	}
	slices.Sort(out)
	return out
}

// putDomains saves each domain's rule set (merged: other domains stay, as in Eru). Every
// rule set is checked first (CompileEru), so a refusal saves nothing; upstreams they name
// that are not services yet are created empty (their backends answer 503 until servers are
// PUT: citadel sets the rules before the upstream).
func (s *Server) putDomains(r *http.Request, body []byte) (any, error) {
	var in map[string]gateway.EruRules
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if len(in) == 0 {
		return nil, errorf(http.StatusBadRequest, "no domain in the body: want {\"DOMAIN\": {\"init\": RULE, \"rules\": {...}}}")
	}
	cfg := s.d.Config()
	keys := slices.Sorted(maps.Keys(in))
	where := map[string]domainKey{}
	var create []string
	for _, k := range keys {
		dk, err := resolve(cfg, k)
		if err != nil {
			return nil, err
		}
		for o, odk := range where {
			if odk == dk {
				return nil, errorf(http.StatusBadRequest, "domains %q and %q are the same domain (hosts are matched without port and case)", o, k)
			}
		}
		if d, found := cfg.Gateways[dk.gateway].Domains[dk.host]; found && d.Eru == nil {
			return nil, errorf(http.StatusConflict, "domain %s of gateway %s is defined through /v1/gateways, not by Eru: change it there", dk.host, dk.gateway)
		}
		where[k] = dk
		// Every error here is bad input: anyUpstream knows every name a service can have.
		if _, err := gateway.CompileEru(dk.host, in[k], anyUpstream{}); err != nil {
			return nil, errorf(http.StatusBadRequest, "%v", err)
		}
		for _, n := range servernames(in[k]) {
			if _, found := cfg.Services[n]; !found && !slices.Contains(create, n) {
				create = append(create, n)
			}
		}
	}
	var created []string
	undo := func() {
		for _, n := range created {
			if err := s.d.Definitions.RemoveService(n); err != nil {
				s.log.Error("eru: remove a service created for a refused domain", "service", n, "err", err)
			}
		}
	}
	for _, n := range create {
		if err := s.d.Definitions.DefineService(n, UpstreamService()); err != nil {
			undo()
			return nil, coreError("upstream "+n, err)
		}
		s.log.Info("eru: service created for an upstream a rule names", "service", n)
		created = append(created, n)
	}
	var warns []string
	for i, k := range keys {
		rules := in[k]
		w, err := s.d.Gateways.PutDomain(where[k].gateway, where[k].host, gateway.Domain{Eru: &rules})
		if err != nil {
			if i == 0 {
				undo()
			}
			return nil, coreError("domain "+k, err)
		}
		for _, x := range w {
			warns = append(warns, k+": "+x)
		}
		s.log.Info("eru: domain saved", "gateway", where[k].gateway, "domain", where[k].host)
	}
	if err := s.wait(r, s.d.Applier.Trigger()); err != nil {
		return nil, err
	}
	return ok{Msg: "OK", Warnings: warns}, nil
}

// deleteDomains removes domains; absent ones are ignored, as in Eru.
func (s *Server) deleteDomains(r *http.Request, body []byte) (any, error) {
	var in []string
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	cfg := s.d.Config()
	var keys []domainKey
	for _, k := range in {
		dk, err := resolve(cfg, k)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Status == http.StatusNotFound {
				continue
			}
			return nil, err
		}
		d, found := cfg.Gateways[dk.gateway].Domains[dk.host]
		if !found {
			continue
		}
		if d.Eru == nil {
			return nil, errorf(http.StatusConflict, "domain %s of gateway %s is defined through /v1/gateways, not by Eru: remove it there", dk.host, dk.gateway)
		}
		keys = append(keys, dk)
	}
	for _, dk := range keys {
		if err := s.d.Gateways.RemoveDomain(dk.gateway, dk.host); err != nil && !errors.Is(err, defs.ErrNoGateway) {
			return nil, coreError("domain "+dk.host, err)
		}
		s.log.Info("eru: domain removed", "gateway", dk.gateway, "domain", dk.host)
	}
	if len(keys) > 0 {
		if err := s.wait(r, s.d.Applier.Trigger()); err != nil {
			return nil, err
		}
	}
	return ok{Msg: "OK"}, nil
}

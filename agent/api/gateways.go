package api

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"

	"clb/agent/defs"
	"clb/internal/gateway"
	"clb/internal/model"
)

// Gateway endpoints (issue 10): shared listeners that route by host, path, user agent,
// headers and method. Gateways are admin; a domain may also be changed by a key whose scope
// names it (auth.Scope.Domains). Every change is validated before anything is saved (400 for
// bad input, 409 for a route to a service that does not exist or a gateway of the config
// file), answered once haproxy routes by it like a registration (?wait=false: 202 at once),
// with the validation's warnings (shadowed routes, ...) in "warnings".

// MaxGatewayBody bounds the body of a gateway or domain PUT: 2,000 routes of a domain are
// about 150 KB of JSON.
const MaxGatewayBody = 4 << 20

// Gateways defines gateways and their domains (the agent). Errors: gateway.ErrInvalid (400),
// gateway.ErrUnknownService (409), defs.ErrFileGateway (409), defs.ErrNoGateway (404),
// defs.ErrInvalid (409: a bind already taken) or store failures.
type Gateways interface {
	PutGateway(name string, g gateway.Gateway) (warnings []string, err error)
	RemoveGateway(name string) error
	PutDomain(gw, host string, d gateway.Domain) (warnings []string, err error)
	RemoveDomain(gw, host string) error
	// IsFileGateway reports whether a gateway comes from the config file.
	IsFileGateway(name string) bool
}

// GatewayView is a gateway as GET /v1/gateways shows it: its definition and where it comes
// from ("config": the config file, which the API may not change; "api").
type GatewayView struct {
	gateway.Gateway
	Source string `json:"source"`
}

func (h *Server) routeGateways() {
	if h.d.Gateways == nil {
		return
	}
	h.handleSized("GET /v1/gateways", MaxBody, h.listGateways)
	h.handleSized("GET /v1/gateways/{gateway}", MaxBody, h.getGateway)
	h.handleSized("PUT /v1/gateways/{gateway}", MaxGatewayBody, h.putGateway)
	h.handleSized("DELETE /v1/gateways/{gateway}", MaxBody, h.deleteGateway)
	h.handleSized("GET /v1/gateways/{gateway}/domains/{host}", MaxBody, h.getDomain)
	h.handleSized("PUT /v1/gateways/{gateway}/domains/{host}", MaxGatewayBody, h.putDomain)
	h.handleSized("DELETE /v1/gateways/{gateway}/domains/{host}", MaxBody, h.deleteDomain)
}

func (h *Server) gatewayView(name string, g gateway.Gateway) GatewayView {
	src := "api"
	if h.d.Gateways.IsFileGateway(name) {
		src = "config"
	}
	return GatewayView{Gateway: g, Source: src}
}

func (h *Server) listGateways(r *http.Request, _ []byte) (int, any, error) {
	gws := h.d.Config().Gateways
	out := make(map[string]GatewayView, len(gws))
	for _, name := range slices.Sorted(maps.Keys(gws)) {
		out[name] = h.gatewayView(name, gws[name])
	}
	return http.StatusOK, map[string]any{"gateways": out}, nil
}

// gatewayName is the gateway named in the path, checked (404 unless it exists and must).
func (h *Server) gatewayName(r *http.Request, mustExist bool) (string, gateway.Gateway, error) {
	name := r.PathValue("gateway")
	if err := model.ValidateServiceName(name); err != nil {
		return "", gateway.Gateway{}, errorf(http.StatusBadRequest, "bad_request", "gateway name: %v", strings.Replace(err.Error(), "service", "gateway", 1))
	}
	g, ok := h.d.Config().Gateways[name]
	if !ok && mustExist {
		return "", g, errorf(http.StatusNotFound, "not_found", "unknown gateway %q", name)
	}
	return name, g, nil
}

func (h *Server) getGateway(r *http.Request, _ []byte) (int, any, error) {
	name, g, err := h.gatewayName(r, true)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, h.gatewayView(name, g), nil
}

// decodeStrict decodes one JSON value with unknown fields refused.
func decodeStrict(body []byte, v any, what string) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return errorf(http.StatusBadRequest, "bad_request", "%s: the body is empty", what)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "bad_request", "decode %s: %v", what, err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "bad_request", "decode %s: more than one JSON value", what)
	}
	return nil
}

func (h *Server) putGateway(r *http.Request, body []byte) (int, any, error) {
	name, _, err := h.gatewayName(r, false)
	if err != nil {
		return 0, nil, err
	}
	var g gateway.Gateway
	if err := decodeStrict(body, &g, "gateway "+name); err != nil {
		return 0, nil, err
	}
	warns, err := h.d.Gateways.PutGateway(name, g)
	if err != nil {
		return 0, nil, gatewayError("define gateway "+name, err)
	}
	h.log.Info("gateway defined", "gateway", name, "domains", len(g.Domains))
	return h.awaitChange(r, map[string]any{"gateway": name, "warnings": nonNil(warns)})
}

func (h *Server) deleteGateway(r *http.Request, _ []byte) (int, any, error) {
	name, _, err := h.gatewayName(r, false)
	if err != nil {
		return 0, nil, err
	}
	if err := h.d.Gateways.RemoveGateway(name); err != nil {
		return 0, nil, gatewayError("remove gateway "+name, err)
	}
	h.log.Info("gateway removed", "gateway", name)
	return h.awaitChange(r, map[string]any{"gateway": name})
}

// domainHost is the host named in the path: lower case, a valid host name, and one the
// caller's key may change (403 otherwise).
func domainHost(r *http.Request) (string, error) {
	host := r.PathValue("host")
	if host != strings.ToLower(host) || !model.ValidHostname(host) {
		return "", errorf(http.StatusBadRequest, "bad_request", "domain %q: want a lower-case host name without port", model.Clip(host, 80))
	}
	if id := Identity(r); !id.Scope.AllowsDomain(host) {
		return "", errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: it may not change domain %q", id.KeyID, id.Scope, host)
	}
	return host, nil
}

func (h *Server) getDomain(r *http.Request, _ []byte) (int, any, error) {
	host, err := domainHost(r)
	if err != nil {
		return 0, nil, err
	}
	name, g, err := h.gatewayName(r, true)
	if err != nil {
		return 0, nil, err
	}
	d, ok := g.Domains[host]
	if !ok {
		return 0, nil, errorf(http.StatusNotFound, "not_found", "gateway %s has no domain %q", name, host)
	}
	return http.StatusOK, d, nil
}

func (h *Server) putDomain(r *http.Request, body []byte) (int, any, error) {
	host, err := domainHost(r)
	if err != nil {
		return 0, nil, err
	}
	name, _, err := h.gatewayName(r, true)
	if err != nil {
		return 0, nil, err
	}
	var d gateway.Domain
	if err := decodeStrict(body, &d, "domain "+host); err != nil {
		return 0, nil, err
	}
	warns, err := h.d.Gateways.PutDomain(name, host, d)
	if err != nil {
		return 0, nil, gatewayError("define domain "+host, err)
	}
	h.log.Info("domain defined", "gateway", name, "domain", host, "routes", len(d.Routes))
	return h.awaitChange(r, map[string]any{"gateway": name, "domain": host, "warnings": nonNil(warns)})
}

func (h *Server) deleteDomain(r *http.Request, _ []byte) (int, any, error) {
	host, err := domainHost(r)
	if err != nil {
		return 0, nil, err
	}
	name, _, err := h.gatewayName(r, true)
	if err != nil {
		return 0, nil, err
	}
	if err := h.d.Gateways.RemoveDomain(name, host); err != nil {
		return 0, nil, gatewayError("remove domain "+host, err)
	}
	h.log.Info("domain removed", "gateway", name, "domain", host)
	return h.awaitChange(r, map[string]any{"gateway": name, "domain": host})
}

// gatewayError turns a gateway change's failure into the API's answer.
func gatewayError(what string, err error) error {
	switch {
	case errors.Is(err, gateway.ErrUnknownService):
		return wrap(errorf(http.StatusConflict, "unknown_service", "%s: %v", what, err), err)
	case errors.Is(err, defs.ErrFileGateway):
		return wrap(errorf(http.StatusConflict, "conflict", "%v", err), err)
	case errors.Is(err, defs.ErrNoGateway):
		return wrap(errorf(http.StatusNotFound, "not_found", "%v", err), err)
	case errors.Is(err, gateway.ErrInvalid):
		return wrap(errorf(http.StatusBadRequest, "bad_request", "%s: %v", what, err), err)
	}
	return storeError(what, err)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

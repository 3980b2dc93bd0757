package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"gopkg.in/yaml.v3"

	"clb/agent/config"
	"clb/internal/model"
)

// Admin endpoints: services defined through the API and zones taken out of rotation, applied
// like any other change.

// putService defines or replaces a service. The body is the service as in the config file, in
// JSON (or YAML): {"listeners":[{"port":80,"member_port":8080}],"health_check":{...},...}.
func (h *Server) putService(r *http.Request, body []byte) (int, any, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	var svc config.Service
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&svc); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "service %s: the body must define at least one listener", name)
		}
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "decode service %s: %v", name, err)
	}
	checked := svc
	checked.SetDefaults()
	if err := checked.Validate(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := h.d.Definitions.DefineService(name, svc); err != nil {
		return 0, nil, storeError("define service "+name, err)
	}
	h.log.Info("service defined", "service", name)
	return h.awaitChange(r, map[string]any{"service": name})
}

// deleteService removes a service defined through the API. Its members stay in the state, so
// defining the service again brings them back.
func (h *Server) deleteService(r *http.Request, _ []byte) (int, any, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := h.d.Definitions.RemoveService(name); err != nil {
		return 0, nil, storeError("remove service "+name, err)
	}
	h.log.Info("service removed", "service", name)
	return h.awaitChange(r, map[string]any{"service": name})
}

// setZone takes a zone of a service out of rotation (its members get weight 0: no new
// requests, in-flight ones finish) or puts it back.
func (h *Server) setZone(enable bool) func(r *http.Request, body []byte) (int, any, error) {
	return func(r *http.Request, _ []byte) (int, any, error) {
		service, _, err := h.service(r)
		if err != nil {
			return 0, nil, err
		}
		zone := r.PathValue("zone")
		if err := model.ValidateZone(zone); err != nil || zone == "" {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "zone %q: want 1-64 of a-z 0-9 - _", zone)
		}
		if err := h.d.Definitions.SetZone(service, zone, enable); err != nil {
			return 0, nil, storeError("set zone "+zone, err)
		}
		verb := map[bool]string{true: "enabled", false: "disabled"}[enable]
		h.log.Info("zone "+verb, "service", service, "zone", zone)
		return h.awaitChange(r, map[string]any{"service": service, "zone": zone, "enabled": enable})
	}
}

// awaitChange waits for the apply of a definitions change, like a registration does.
func (h *Server) awaitChange(r *http.Request, body map[string]any) (int, any, error) {
	status, notApplied, err := h.settle(r, h.d.Applier.Trigger())
	switch {
	case err != nil:
		return 0, nil, err
	case status == http.StatusAccepted:
		body["status_url"] = "/v1/status"
	case notApplied != nil:
		body["error"], body["code"] = "change saved but not applied: "+notApplied.Error(), "not_applied"
	default:
		body["applied"] = true
	}
	return status, body, nil
}

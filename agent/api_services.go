package agent

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"

	"gopkg.in/yaml.v3"

	"clb/internal/model"
)

// Admin endpoints: services defined through the API and zones taken out of rotation. Both are
// kept in STATE_DIR/definitions.yaml and applied like any other change.

// putService defines or replaces a service. The body is the service as in the config file, in
// JSON (or YAML): {"listeners":[{"port":80,"member_port":8080}],"health_check":{...},...}.
func (h *api) putService(r *http.Request, body []byte) (int, any, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	var svc Service
	dec := yaml.NewDecoder(bytes.NewReader(body))
	dec.KnownFields(true)
	if err := dec.Decode(&svc); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "service %s: the body must define at least one listener", name)
		}
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "decode service %s: %v", name, err)
	}
	if err := svc.validate(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	h.a.cfgMu.Lock()
	_, inFile := h.a.fileServices[name]
	h.a.cfgMu.Unlock()
	if inFile {
		return 0, nil, errorf(http.StatusConflict, "conflict", "service %s is defined in the config file; change it there", name)
	}
	if err := h.changeDefs(func(f *defsFile) error {
		f.Services[name] = svc
		return nil
	}); err != nil {
		return 0, nil, err
	}
	h.log.Info("service defined", "service", name)
	return h.awaitChange(r, map[string]any{"service": name})
}

// deleteService removes a service defined through the API. Its members stay in the state, so
// defining the service again brings them back.
func (h *api) deleteService(r *http.Request, _ []byte) (int, any, error) {
	name := r.PathValue("service")
	if err := model.ValidateServiceName(name); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	h.a.cfgMu.Lock()
	_, inFile := h.a.fileServices[name]
	h.a.cfgMu.Unlock()
	if inFile {
		return 0, nil, errorf(http.StatusConflict, "conflict", "service %s is defined in the config file; remove it there", name)
	}
	if err := h.changeDefs(func(f *defsFile) error {
		if _, ok := f.Services[name]; !ok {
			return errorf(http.StatusNotFound, "not_found", "unknown service %q: it was not defined through the API", name)
		}
		delete(f.Services, name)
		return nil
	}); err != nil {
		return 0, nil, err
	}
	h.log.Info("service removed", "service", name)
	return h.awaitChange(r, map[string]any{"service": name})
}

// setZone takes a zone of a service out of rotation (its members get weight 0: no new
// requests, in-flight ones finish) or puts it back.
func (h *api) setZone(enable bool) func(r *http.Request, body []byte) (int, any, error) {
	return func(r *http.Request, _ []byte) (int, any, error) {
		service, _, err := h.service(r)
		if err != nil {
			return 0, nil, err
		}
		zone := r.PathValue("zone")
		if err := model.ValidateZone(zone); err != nil || zone == "" {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "zone %q: want 1-64 of a-z 0-9 - _", zone)
		}
		if err := h.changeDefs(func(f *defsFile) error {
			zones := slices.DeleteFunc(slices.Clone(f.DisabledZones[service]), func(z string) bool { return z == zone })
			if !enable {
				zones = append(zones, zone)
				slices.Sort(zones)
			}
			if len(zones) == 0 {
				delete(f.DisabledZones, service)
			} else {
				f.DisabledZones[service] = zones
			}
			return nil
		}); err != nil {
			return 0, nil, err
		}
		verb := map[bool]string{true: "enabled", false: "disabled"}[enable]
		h.log.Info("zone "+verb, "service", service, "zone", zone)
		return h.awaitChange(r, map[string]any{"service": service, "zone": zone, "enabled": enable})
	}
}

// changeDefs saves a definitions change and makes it the running config; a change that makes
// the config invalid (a listener already used, say) is undone.
func (h *api) changeDefs(fn func(f *defsFile) error) error {
	before := h.a.defs.snapshot()
	if err := h.a.defs.update(fn); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return err
		}
		return storeError("save definitions", err)
	}
	if err := h.a.setServices(nil); err != nil {
		if rerr := h.a.defs.update(func(f *defsFile) error { *f = before; return nil }); rerr != nil {
			h.log.Error("undo definitions change", "err", rerr)
		}
		return errorf(http.StatusConflict, "conflict", "%v", err)
	}
	return nil
}

// awaitChange waits for the apply of a definitions change, like a registration does.
func (h *api) awaitChange(r *http.Request, body map[string]any) (int, any, error) {
	done := h.a.rec.trigger()
	if r.URL.Query().Get("wait") == "false" {
		body["status_url"] = "/v1/status"
		return http.StatusAccepted, body, nil
	}
	res, err := h.wait(r, done)
	if err != nil {
		return 0, nil, err
	}
	if res != nil {
		body["error"], body["code"] = "change saved but not applied: "+res.Error(), "not_applied"
		return http.StatusServiceUnavailable, body, nil
	}
	body["applied"] = true
	return http.StatusOK, body, nil
}

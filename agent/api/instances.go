package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"clb/agent/defs"
	"clb/internal/model"
)

// The instance registry (for the AWS front, whose calls name instances by id): a member
// machine announces itself once with its instance id, address and zone
// (clb_register --instance-id). Any valid key may announce an instance, at its own source
// address only unless it is an admin key: a register key cannot point an id at someone
// else's machine.

// Instances is the instance registry.
type Instances interface {
	PutInstance(id string, in defs.Instance) error
	Definitions() defs.File
}

type instanceRequest struct {
	Address string `json:"address"`
	Zone    string `json:"zone"`
}

func (h *Server) putInstance(r *http.Request, body []byte) (int, any, error) {
	id := r.PathValue("id")
	if err := model.ValidateMemberName(id); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "instance id: %v", err)
	}
	var req instanceRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "bad_request", "decode request body: %v", err)
		}
	}
	src := SourceAddr(r)
	if req.Address == "" {
		req.Address = src
	}
	if err := model.ValidateAddress(req.Address); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := model.ValidateZone(req.Zone); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if id := Identity(r); !id.Scope.Admin && req.Address != src {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: it may announce an instance at its own address %s only, not %s", id.KeyID, id.Scope, src, req.Address)
	}
	if err := h.d.Instances.PutInstance(id, defs.Instance{Address: req.Address, Zone: req.Zone}); err != nil {
		return 0, nil, storeError("save instance "+id, err)
	}
	h.log.Info("instance announced", "instance", id, "addr", req.Address, "zone", req.Zone)
	// applied: the registry is saved; it changes nothing haproxy runs until a load balancer
	// registers the instance.
	return http.StatusOK, map[string]any{"instance_id": id, "address": req.Address, "zone": req.Zone, "applied": true}, nil
}

func (h *Server) listInstances(r *http.Request, _ []byte) (int, any, error) {
	return http.StatusOK, map[string]any{"instances": h.d.Instances.Definitions().Instances}, nil
}

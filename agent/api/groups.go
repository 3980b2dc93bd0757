package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"clb/agent/autoscale"
)

// Auto Scaling groups (package autoscale): GET /v1/groups and /v1/groups/{group} show them with
// their instances (and one group its activities, newest first); PUT
// /v1/groups/{group}/desired_capacity {"desired_capacity": N, "honor_cooldown": false} sets
// the desired capacity (admin). Groups are defined in the config file (groups:).

// Groups is the group controller.
type Groups interface {
	Groups() []autoscale.GroupView
	Group(name string) (autoscale.GroupView, error)
	Activities(group string) []autoscale.Activity
	SetDesiredCapacity(group string, n int, honorCooldown bool, cause string) error
}

func (h *Server) listGroups(r *http.Request, _ []byte) (int, any, error) {
	return http.StatusOK, map[string]any{"groups": h.d.Groups.Groups()}, nil
}

func (h *Server) getGroup(r *http.Request, _ []byte) (int, any, error) {
	name := r.PathValue("group")
	v, err := h.d.Groups.Group(name)
	if err != nil {
		return 0, nil, groupError(err)
	}
	return http.StatusOK, map[string]any{"group": v, "activities": h.d.Groups.Activities(name)}, nil
}

func (h *Server) setDesired(r *http.Request, body []byte) (int, any, error) {
	var req struct {
		Desired       *int `json:"desired_capacity"`
		HonorCooldown bool `json:"honor_cooldown"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "decode request body: %v", err)
	}
	if req.Desired == nil {
		return 0, nil, errorf(http.StatusBadRequest, "bad_request", "desired_capacity is missing")
	}
	name := r.PathValue("group")
	if err := h.d.Groups.SetDesiredCapacity(name, *req.Desired, req.HonorCooldown, ""); err != nil {
		return 0, nil, groupError(err)
	}
	h.log.Info("desired capacity set", "group", name, "desired", *req.Desired, "key", Identity(r).KeyID)
	v, err := h.d.Groups.Group(name)
	if err != nil {
		return 0, nil, groupError(err)
	}
	return http.StatusOK, map[string]any{"group": v}, nil
}

func groupError(err error) error {
	switch {
	case errors.Is(err, autoscale.ErrNotFound):
		return errorf(http.StatusNotFound, "not_found", "%v", err)
	case errors.Is(err, autoscale.ErrInvalid):
		return errorf(http.StatusBadRequest, "bad_request", "%v", err)
	case errors.Is(err, autoscale.ErrCooldown), errors.Is(err, autoscale.ErrInProgress):
		return errorf(http.StatusConflict, "conflict", "%v", err)
	}
	return err
}

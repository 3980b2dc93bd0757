package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"clb/agent/defs"
	"clb/internal/model"
	"clb/internal/store"
)

// memberStoreError is storeError for a membership change. When the state could not be
// written, the change may already have reached haproxy (the reconciler applies staged changes
// while they are written: reconcile.StagedMembers); the answer waits, bounded, for the apply
// that takes it out again, so that "haproxy keeps serving the last membership" is true when
// the caller reads it.
func (h *Server) memberStoreError(r *http.Request, what string, err error) error {
	if errors.Is(err, store.ErrNotSaved) {
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-h.d.Applier.Trigger():
		case <-r.Context().Done():
		case <-t.C:
		}
	}
	return storeError(what, err)
}

// storeError turns a store failure into the API's answer.
func storeError(what string, err error) error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, store.ErrNotSaved):
		e := errorf(http.StatusServiceUnavailable, "store_unavailable",
			"%s: the state dir could not be written (%v), so nothing of the change was kept; haproxy keeps serving the last membership; retry once the disk has room", what, err)
		e.Err, e.RetryAfter = err, 5*time.Second
		return e
	case errors.Is(err, store.ErrUnavailable):
		e := errorf(http.StatusServiceUnavailable, "store_unavailable",
			"%s: the membership store (etcd) is unavailable, so the change was not saved (if etcd failed during the write it may have been: retrying is safe); haproxy keeps serving the last membership: %v", what, err)
		e.Err, e.RetryAfter = err, time.Second
		return e
	case errors.Is(err, store.ErrNotSeen):
		return wrap(errorf(http.StatusServiceUnavailable, "not_applied", "change saved but not applied: %s: %v", what, err), err)
	case errors.Is(err, store.ErrConflict):
		return wrap(errorf(http.StatusConflict, "conflict", "%s: %v; retry", what, err), err)
	case errors.Is(err, model.ErrInvalid):
		return wrap(errorf(http.StatusBadRequest, "bad_request", "%s: %v", what, err), err)
	case errors.Is(err, defs.ErrFileService):
		return wrap(errorf(http.StatusConflict, "conflict", "%v", err), err)
	case errors.Is(err, defs.ErrNotDefined):
		return wrap(errorf(http.StatusNotFound, "not_found", "%v", err), err)
	case errors.Is(err, defs.ErrInvalid):
		return wrap(errorf(http.StatusConflict, "conflict", "%v", err), err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func wrap(e *Error, cause error) *Error {
	e.Err = cause
	return e
}

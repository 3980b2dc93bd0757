package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"clb/internal/auth"
	"clb/internal/ratelimit"
)

// identityKey is the context key of the authenticated auth.Identity of a request.
type identityKey struct{}

// Identity returns who signed r (the zero Identity, allowed nothing, for unsigned requests).
func Identity(r *http.Request) auth.Identity {
	id, _ := r.Context().Value(identityKey{}).(auth.Identity)
	return id
}

// preauthKey is the context key of an identity that in-process code (ServeAs) has already
// authenticated; see ServeAs for why a client cannot set it.
type preauthKey struct{}

// ServeAs serves r as if it had been signed by id: the same routes, scope checks, validation
// and answers as a signed request, without a signature. It is for fronts in the same process
// that authenticate their callers themselves (the web console's sessions). It is safe because
// the identity travels as a context value under a key type unexported from this package: a
// client sends only bytes (headers, path, body), and nothing in a request can become a context
// value, so only code linked into clbd that calls ServeAs can skip the signature check.
func (h *Server) ServeAs(w http.ResponseWriter, r *http.Request, id auth.Identity) {
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), preauthKey{}, id)))
}

// requireAdmin answers 403 forbidden unless r was signed with an admin key. handle applies it
// to every admin pattern (see needsAdmin), whatever the handler does.
func requireAdmin(r *http.Request) error {
	id := Identity(r)
	if id.Scope.Admin {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: %s %s needs a key with admin scope", id.KeyID, id.Scope, r.Method, r.URL.Path)
}

// requireService answers 403 forbidden unless r's key may change the members of service.
func requireService(r *http.Request, service string) error {
	id := Identity(r)
	if id.Scope.AllowsService(service) {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "key %q has scope %s: it may not use service %q", id.KeyID, id.Scope, service)
}

// needsAdmin reports whether a route pattern is an admin endpoint: defining or removing a
// service, zones, and gateways (their domains are checked per domain instead). handle enforces it whatever the handler does.
func needsAdmin(pattern string) bool {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case strings.HasPrefix(path, "/v1/gateways/{gateway}/domains/"):
		return false // scoped per domain (domainHost)
	case strings.HasPrefix(path, "/v1/gateways"):
		return true
	case strings.Contains(path, "/zones"):
		return true
	case strings.HasPrefix(path, "/v1/groups/") && method != http.MethodGet:
		return true
	case path == "/v1/services/{service}" && method != http.MethodGet:
		return true
	case path == "/v1/services" && method != http.MethodGet:
		return true
	}
	return false
}

// authenticate runs before every authenticated handler: it refuses a source that failed too
// often (429 rate_limited with Retry-After), checks the signature (401, one message for every
// cause; the cause goes to the log with the source), counts failures, and returns r with the
// caller's identity attached. A request from ServeAs carries its identity already.
func (h *Server) authenticate(w http.ResponseWriter, r *http.Request, body []byte) (*http.Request, bool) {
	if id, ok := r.Context().Value(preauthKey{}).(auth.Identity); ok {
		return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
	}
	src := ratelimit.Source(SourceAddr(r))
	if wait, blocked := h.d.Limiter.Blocked(src); blocked {
		h.limited.Add(1)
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		h.log.Warn("request refused: too many failed authentications", "addr", r.RemoteAddr, "source", src, "method", r.Method, "path", r.URL.Path, "retry_after", secs)
		h.fail(w, r, errorf(http.StatusTooManyRequests, "rate_limited", "too many failed authentications from %s; retry after %d s", src, secs))
		return r, false
	}
	id, err := h.d.Verifier.Authenticate(r, body)
	if err != nil {
		h.d.Limiter.Take(src)
		h.failures.Add(1)
		h.log.Warn("authentication refused", "addr", r.RemoteAddr, "key", id.KeyID, "method", r.Method, "path", r.URL.Path, "err", err)
		h.fail(w, r, errorf(http.StatusUnauthorized, "unauthenticated", "%s", auth.ErrUnauthenticated.Error()))
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), true
}

// AuthFailures is the number of requests refused because their signature was missing,
// stale, replayed or invalid.
func (h *Server) AuthFailures() uint64 { return h.failures.Load() }

// AuthRateLimited is the number of requests refused with 429 because their source had too
// many failed authentications.
func (h *Server) AuthRateLimited() uint64 { return h.limited.Load() }

// checkMemberCap refuses a new member in a service that already has max_members.
func (h *Server) checkMemberCap(service, member string) error {
	max := h.d.Config().MaxMembers
	if max <= 0 {
		return nil
	}
	members := h.d.Members.Snapshot().Members[service]
	if len(members) < max {
		return nil
	}
	for _, m := range members {
		if m.Name == member {
			return nil // an update, not a new member
		}
	}
	return errorf(http.StatusConflict, "conflict", "service %s already has %d members, the limit (max_members); unregister members or raise max_members", service, len(members))
}

package reconcile

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"clb/internal/haproxy"
	"clb/internal/render"
)

// TLS per domain on https gateways. Render reads and validates each domain's certificate
// (Gateways: a refused one fails the render, and haproxy keeps serving what it has); install
// writes clb's copies, the default certificate and the crt-list (WriteCerts) before anything
// else reads them, then tells the running haproxy what changed through the runtime API
// (haproxy.ApplyCerts: new/set/commit ssl cert, add/del ssl crt-list), so that a certificate
// added, replaced or removed is served by the next handshake without a reload: path
// "runtime-certs". What haproxy 2.6 cannot take at runtime (a PEM over its CLI buffer, a
// failed command) is applied by a reload, which reads the files. Changes written but not yet
// known to haproxy are kept (certs) until a runtime apply or a reload takes them, so a
// deferred or failed apply is not forgotten; after clbd starts, haproxy's certificates are
// compared with the files once (haproxy.CheckCerts), and a difference takes a reload.

// PathRuntimeCerts is the apply path of a change that only touched certificates of https
// gateways.
const PathRuntimeCerts = "runtime-certs"

// pendCerts adds certificate changes written to disk to those haproxy does not know yet: a
// certificate changed twice keeps the first change's Old (what haproxy has) and the last
// one's New; one added then removed is nothing to do.
func (r *Reconciler) pendCerts(updates []CertUpdate) {
	for _, u := range updates {
		if p, ok := r.certs[u.Path]; ok {
			u.Old = p.Old
		}
		if u.Old == nil && u.New == nil {
			delete(r.certs, u.Path)
			continue
		}
		r.certs[u.Path] = u
	}
}

// certsLoaded records that haproxy read the certificate files (a reload, or a start still to
// come): nothing is pending.
func (r *Reconciler) certsLoaded(loaded bool) {
	if loaded {
		clear(r.certs)
		r.certsChecked = true
	}
}

// applyCerts gives the running haproxy the pending certificate changes through its admin
// socket and reports how many it applied. An error means a reload must load the files
// (wrapping haproxy.ErrCertNeedsReload); the changes stay pending until one does.
func (r *Reconciler) applyCerts(ctx context.Context, data render.Data, running bool) (int, error) {
	var warns []string
	for _, s := range data.Certs {
		warns = append(warns, s.Warnings...)
	}
	if w := strings.Join(warns, "; "); w != r.certWarns {
		r.certWarns = w
		for _, w := range warns {
			r.log.Warn("gateway certificate", "warning", w)
		}
	}
	if !running {
		return 0, nil // haproxy reads the files when it starts
	}
	if len(data.Certs) > 0 && !r.certsChecked {
		if r.admin == "" {
			r.certsChecked = true // nothing to ask: the next reload reads the files
		} else {
			for _, s := range data.Certs {
				if err := haproxy.CheckCerts(ctx, r.admin, s.Dir); err != nil {
					return 0, err
				}
			}
			r.certsChecked = true
			clear(r.certs) // haproxy serves the files
		}
	}
	if len(r.certs) == 0 {
		return 0, nil
	}
	if r.admin == "" {
		return 0, errors.New("certificates changed and haproxy has no admin socket: a reload loads them")
	}
	n := 0
	for _, path := range slices.Sorted(maps.Keys(r.certs)) {
		u := r.certs[path]
		if err := haproxy.ApplyCerts(ctx, r.admin, u.CrtList, []haproxy.CertChange{u.CertChange}); err != nil {
			return n, err
		}
		delete(r.certs, path)
		n++
	}
	r.log.Info("certificates applied through the runtime API", "changes", n)
	return n, nil
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"clb/internal/etcdstore"
	"clb/internal/model"
	"clb/internal/store"
)

// memberStore is the membership as the API, the lease expiry and the reconciler use it. Two
// implementations: the local state file (store.Store, the default) and etcd
// (etcdstore.Store), shared by several clbd nodes.
type memberStore interface {
	Put(service string, m model.Member) (changed bool, err error)
	PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (changed bool, expires time.Time, err error)
	Delete(service, name string) (model.Member, error)
	Get(service, name string) (model.Member, bool)
	// Snapshot is the membership with its generation (the etcd revision for etcd).
	Snapshot() store.Snapshot
	Expire(now time.Time) ([]store.Expired, error)
	// Changes receives a value when someone else changed the membership (another node, an
	// etcd lease that expired); nil for a store only this clbd writes.
	Changes() <-chan struct{}
	// Ready is nil when Snapshot can be rendered: an etcd store not read yet is not.
	Ready() error
}

// localStore is the state file: only this clbd writes it.
type localStore struct{ *store.Store }

func (localStore) Changes() <-chan struct{} { return nil }
func (localStore) Ready() error             { return nil }

// openStore opens the membership store of the config and the API's definitions: both in the
// state dir, or both in etcd (services defined through the API and disabled zones belong to
// the fleet, not to one node).
func (a *Agent) openStore(ctx context.Context, cfg *Config) error {
	if cfg.Store.Type != storeEtcd {
		st, err := store.Open(cfg.StateDir)
		if err != nil {
			return err
		}
		a.store = localStore{st}
		a.defs, err = openDefs(cfg.StateDir)
		return err
	}
	es, err := openEtcd(cfg, a.log)
	if err != nil {
		return err
	}
	a.shared, a.store = es, es
	a.defs = &defs{remote: es}
	// The first read. If etcd does not answer, clbd still starts: haproxy keeps (or starts
	// with) its last config, and nothing is rendered until the membership is read.
	sctx, cancel := context.WithTimeout(ctx, 2*cfg.Store.DialTimeout)
	defer cancel()
	if _, err := es.Sync(sctx); err != nil {
		a.log.Warn("membership not read from etcd at start; haproxy keeps its last config until it is", "err", err)
	}
	if _, err := a.defs.refresh(); err != nil {
		a.log.Error("definitions in etcd are invalid; ignored", "err", err)
	}
	return nil
}

// openEtcd connects to the etcd of the config (without waiting for it).
func openEtcd(cfg *Config, log *slog.Logger) (*etcdstore.Store, error) {
	sc := cfg.Store
	tc, err := sc.tlsConfig()
	if err != nil {
		return nil, err
	}
	pw, err := sc.password()
	if err != nil {
		return nil, err
	}
	return etcdstore.Open(etcdstore.Config{
		Endpoints: sc.Endpoints, Prefix: sc.Prefix, Timeout: sc.DialTimeout,
		Username: sc.Username, Password: pw, TLS: tc, Logger: log.With("component", "etcd"),
	})
}

// followStore re-applies when another node changed the membership or the definitions.
func (a *Agent) followStore(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.shared.Changes():
		}
		changed, err := a.defs.refresh()
		if err != nil {
			a.log.Error("definitions in etcd are invalid; keeping the running services", "err", err)
		} else if changed {
			if err := a.setServices(nil); err != nil {
				a.log.Error("services defined in etcd conflict with the config file; keeping the running services", "err", err)
			}
		}
		a.rec.trigger()
	}
}

// refresh takes the definitions from etcd's copy; it reports whether they changed.
func (d *defs) refresh() (bool, error) {
	if d.remote == nil {
		return false, nil
	}
	raw := d.remote.Definitions()
	d.mu.Lock()
	same := d.remoteRaw != nil && bytes.Equal(raw, d.remoteRaw)
	d.mu.Unlock()
	if same {
		return false, nil
	}
	f, err := parseDefs(raw)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.file, d.remoteRaw = f, append([]byte{}, raw...)
	d.mu.Unlock()
	return true, nil
}

func parseDefs(raw []byte) (defsFile, error) {
	var f defsFile
	if len(bytes.TrimSpace(raw)) == 0 {
		return f, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("decode definitions: %w", err)
	}
	return f, nil
}

// updateRemote changes the definitions in etcd with fn, applied to etcd's current document
// (a transaction guarded by its revision: two nodes defining services at once lose nothing).
func (d *defs) updateRemote(fn func(f *defsFile) error) error {
	var result defsFile
	var raw []byte
	err := d.remote.UpdateDefinitions(func(old []byte) ([]byte, error) {
		cur, err := parseDefs(old)
		if err != nil {
			return nil, err
		}
		next := defsFile{Services: maps.Clone(cur.Services), DisabledZones: maps.Clone(cur.DisabledZones)}
		if next.Services == nil {
			next.Services = map[string]Service{}
		}
		if next.DisabledZones == nil {
			next.DisabledZones = map[string][]string{}
		}
		if err := fn(&next); err != nil {
			return nil, err
		}
		out, err := yaml.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encode definitions: %w", err)
		}
		result, raw = next, out
		return out, nil
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.file, d.remoteRaw = result, raw
	d.mu.Unlock()
	return nil
}

// storeError turns a store failure into the API's answer.
func storeError(what string, err error) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "store_unavailable",
			"%s: the membership store (etcd) is unavailable, so the change was not saved (if etcd failed during the write it may have been: retrying is safe); haproxy keeps serving the last membership: %v", what, err)
	case errors.Is(err, store.ErrNotSeen):
		return errorf(http.StatusServiceUnavailable, "not_applied", "change saved but not applied: %s: %v", what, err)
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusConflict, "conflict", "%s: %v; retry", what, err)
	case errors.Is(err, model.ErrInvalid):
		return errorf(http.StatusBadRequest, "bad_request", "%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// storeStatus is the store part of /v1/status.
func (a *Agent) storeStatus() etcdstore.Status {
	if a.shared == nil {
		return etcdstore.Status{Type: storeLocal, Available: true, Synced: true, Revision: int64(a.store.Snapshot().Generation)}
	}
	return a.shared.Status()
}

var (
	storeAvailableDesc = prometheus.NewDesc("clb_store_available", "1 if the membership store answers (always 1 for the local state file; for etcd, a quorum read succeeded within the last probe).", []string{"type"}, nil)
	storeRevisionDesc  = prometheus.NewDesc("clb_store_revision", "Revision (etcd) or generation (local) of the membership this node has.", []string{"type"}, nil)
)

func (a *Agent) collectStore(ch chan<- prometheus.Metric) {
	st := a.storeStatus()
	ok := 0.0
	if st.Available {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(storeAvailableDesc, prometheus.GaugeValue, ok, st.Type)
	ch <- prometheus.MustNewConstMetric(storeRevisionDesc, prometheus.GaugeValue, float64(st.Revision), st.Type)
}

package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/etcdstore"
	"clb/internal/model"
	"clb/internal/store"
)

// memberStore is the membership as the fronts, the lease expiry and the reconciler use it
// (each through the smaller interface it defines). Two
// implementations: the local state file (store.Store, the default) and etcd
// (etcdstore.Store), shared by several clbd nodes.
type memberStore interface {
	Put(service string, m model.Member) (changed bool, err error)
	PutLease(service string, m model.Member, ttl time.Duration, now time.Time) (changed bool, expires time.Time, err error)
	Delete(service, name string) (model.Member, error)
	Get(service, name string) (model.Member, bool)
	// Snapshot is the membership with its generation (the etcd revision for etcd).
	Snapshot() store.Snapshot
	// Leases are the leased members by service (etcd: without Expires).
	Leases() map[string]map[string]store.Lease
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
func (a *Agent) openStore(ctx context.Context, cfg *config.Config) error {
	if cfg.Store.Type != config.StoreEtcd {
		st, err := store.Open(cfg.StateDir)
		if err != nil {
			return err
		}
		a.store = localStore{st}
		a.defs, err = defs.Open(cfg.StateDir)
		return err
	}
	es, err := OpenEtcd(cfg, a.log)
	if err != nil {
		return err
	}
	a.shared, a.store = es, es
	a.defs = defs.OpenRemote(es)
	// The first read. If etcd does not answer, clbd still starts: haproxy keeps (or starts
	// with) its last config, and nothing is rendered until the membership is read.
	sctx, cancel := context.WithTimeout(ctx, 2*cfg.Store.DialTimeout)
	defer cancel()
	if _, err := es.Sync(sctx); err != nil {
		a.log.Warn("membership not read from etcd at start; haproxy keeps its last config until it is", "err", err)
	}
	if _, err := a.defs.Refresh(); err != nil {
		a.log.Error("definitions in etcd are invalid; ignored", "err", err)
	}
	return nil
}

// OpenEtcd connects to the etcd of the config (without waiting for it).
func OpenEtcd(cfg *config.Config, log *slog.Logger) (*etcdstore.Store, error) {
	sc := cfg.Store
	tc, err := sc.TLSConfig()
	if err != nil {
		return nil, err
	}
	pw, err := sc.PasswordValue()
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
		changed, err := a.defs.Refresh()
		if err != nil {
			a.log.Error("definitions in etcd are invalid; keeping the running services", "err", err)
		} else if changed {
			if err := a.setServices(nil, nil); err != nil {
				a.log.Error("services defined in etcd conflict with the config file; keeping the running services", "err", err)
			}
		}
		a.rec.Trigger()
	}
}

// storeStatus is the store part of /v1/status.
func (a *Agent) storeStatus() etcdstore.Status {
	if a.shared == nil {
		return etcdstore.Status{Type: config.StoreLocal, Available: true, Synced: true, Revision: int64(a.store.Snapshot().Generation)}
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

package clbdcli

import (
	"clb/agent"
	"clb/agent/config"
	"clb/agent/defs"
	"reflect"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"clb/internal/store"
)

// storeCommand is `clbd store`: moving a node's local state into etcd.
func storeCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "manage the membership store (local state dir or etcd)",
		Subcommands: []*cli.Command{{
			Name:  "migrate",
			Usage: "copy a local state dir (members, leases, API-defined services, disabled zones) into the etcd of the config's store section",
			Description: "Members are written like registrations (idempotent: running it twice changes nothing);\n" +
				"a leased member gets a fresh etcd lease of its TTL. Services defined through the API and\n" +
				"disabled zones are added to etcd's definitions; a service etcd already defines differently\n" +
				"is left as etcd has it (and reported). clbd nodes already running on etcd apply the result.",
			Flags: append(flags(), &cli.StringFlag{Name: "from", Required: true, Usage: "state `DIR` to copy (holding state.json and definitions.yaml)"}),
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return cli.Exit("store migrate takes no arguments", ExitUsage)
				}
				cfg, _, err := validConfig(c)
				if err != nil {
					return cli.Exit(err.Error(), ExitConfig)
				}
				if cfg.Store.Type != config.StoreEtcd {
					return cli.Exit(fmt.Sprintf("store migrate: the config's store type is %s: give a --config whose store section has type: etcd", cfg.Store.Type), ExitUsage)
				}
				log, err := newLogger(cfg.LogLevel, stderr)
				if err != nil {
					return err
				}
				return migrate(c.Context, cfg, str(c, "from"), stdout, log)
			},
		}},
	}
}

// migrate copies the state dir from into the etcd of cfg.
func migrate(ctx context.Context, cfg *config.Config, from string, stdout io.Writer, log *slog.Logger) error {
	if _, err := os.Stat(filepath.Join(from, store.FileName)); err != nil {
		return cli.Exit(fmt.Sprintf("store migrate: %v", err), ExitNoInput)
	}
	local, err := store.Open(from)
	if err != nil {
		return cli.Exit(err.Error(), ExitDataErr)
	}
	localDefs, err := defs.Open(from)
	if err != nil {
		return cli.Exit(err.Error(), ExitDataErr)
	}
	es, err := agent.OpenEtcd(cfg, log)
	if err != nil {
		return cli.Exit(err.Error(), ExitConfig)
	}
	defer es.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { es.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := waitReady(ctx, es, 2*cfg.Store.DialTimeout); err != nil {
		return cli.Exit(fmt.Sprintf("store migrate: %v", err), ExitUnavailable)
	}

	snap, leases := local.Snapshot(), local.Leases()
	var written, same int
	for _, service := range slices.Sorted(maps.Keys(snap.Members)) {
		for _, m := range snap.Members[service] {
			var changed bool
			if l, ok := leases[service][m.Name]; ok {
				changed, _, err = es.PutLease(service, m, l.TTL, time.Now())
			} else {
				changed, err = es.Put(service, m)
			}
			if err != nil && !errors.Is(err, store.ErrNotSeen) {
				return cli.Exit(fmt.Sprintf("store migrate: member %s of service %s: %v (%d written so far; running it again is safe)", m.Name, service, err, written), ExitUnavailable)
			}
			if changed {
				written++
			} else {
				same++
			}
		}
	}
	fmt.Fprintf(stdout, "members: %d written, %d already in etcd\n", written, same)

	src := localDefs.Snapshot()
	var kept []string
	if len(src.Services) > 0 || len(src.DisabledZones) > 0 {
		d := defs.OpenRemote(es)
		err := d.Update(func(f *defs.File) error {
			kept = nil
			for name, svc := range src.Services {
				if cur, ok := f.Services[name]; ok {
					if !sameService(cur, svc) {
						kept = append(kept, name)
					}
					continue
				}
				f.Services[name] = svc
			}
			for service, zones := range src.DisabledZones {
				merged := slices.Clone(f.DisabledZones[service])
				for _, z := range zones {
					if !slices.Contains(merged, z) {
						merged = append(merged, z)
					}
				}
				slices.Sort(merged)
				f.DisabledZones[service] = merged
			}
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotSeen) {
			return cli.Exit(fmt.Sprintf("store migrate: definitions: %v", err), ExitUnavailable)
		}
		slices.Sort(kept)
		for _, name := range kept {
			fmt.Fprintf(stdout, "service %s: etcd defines it differently; etcd's definition kept\n", name)
		}
		fmt.Fprintf(stdout, "definitions: %d services defined through the API, disabled zones of %d services\n", len(src.Services), len(src.DisabledZones))
	}
	fmt.Fprintf(stdout, "migrated %s into etcd %v under %s\n", from, cfg.Store.Endpoints, cfg.Store.Prefix)
	return nil
}

// sameService compares two definitions by value, with their defaults filled: a health check
// is a pointer, and a service written without defaults in one place and with them in the
// other is still the same service.
func sameService(a, b config.Service) bool {
	a.SetDefaults()
	b.SetDefaults()
	return reflect.DeepEqual(a, b)
}

// waitReady waits (bounded) for Run's first read of etcd.
func waitReady(ctx context.Context, es interface{ Ready() error }, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := es.Ready()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readSnapshot reads the membership of the configured store, for clbd render and check.
func readSnapshot(ctx context.Context, cfg *config.Config) (store.Snapshot, error) {
	if cfg.Store.Type != config.StoreEtcd {
		st, err := store.Open(cfg.StateDir)
		if err != nil {
			return store.Snapshot{}, err
		}
		return st.Snapshot(), nil
	}
	es, err := agent.OpenEtcd(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return store.Snapshot{}, err
	}
	defer es.Close()
	if _, err := es.Sync(ctx); err != nil {
		return store.Snapshot{}, err
	}
	return es.Snapshot(), nil
}

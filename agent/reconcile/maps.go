package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"clb/agent/config"
	"clb/internal/gateway"
	"clb/internal/haproxy"
	"clb/internal/render"
)

// Gateways: their sections of haproxy.cfg come from the gateway package's fixed scaffold,
// which reads map files; the domains and routes are only in those maps. So a change of
// routes renders the same haproxy.cfg and other map contents, and the reconciler applies it
// map by map through the runtime API (haproxy.ApplyMap: prepare, add in chunks, verify,
// commit), without a reload: path "runtime-maps". The map files are written first
// (atomically), so that whatever happens next (a failed ApplyMap, a reload, clbd killed
// between prepare and commit) the files are right: a failed ApplyMap falls back to a reload,
// which reads them, and a clbd started again checks what haproxy has loaded against the
// files (haproxy.CheckMap) and applies what differs. After every reload the loaded maps are
// checked against the files the same way.

// PathRuntimeMaps is the apply path of a change that only touched gateway map contents.
const PathRuntimeMaps = "runtime-maps"

// MapApplier loads map contents into the running haproxy; the default is haproxy.ApplyMap
// and haproxy.CheckMap over the admin socket. Tests wrap it to inject failures.
type MapApplier interface {
	// ApplyMap replaces the entries of the map loaded from path, atomically (nothing
	// changes on an error).
	ApplyMap(ctx context.Context, path string, entries []haproxy.MapEntry) error
	// CheckMap is nil when haproxy has exactly entries loaded from path.
	CheckMap(ctx context.Context, path string, entries []haproxy.MapEntry) error
}

// SocketMaps is the MapApplier over haproxy's admin socket.
type SocketMaps string

// ApplyMap is haproxy.ApplyMap on the socket.
func (s SocketMaps) ApplyMap(ctx context.Context, path string, entries []haproxy.MapEntry) error {
	return haproxy.ApplyMap(ctx, string(s), path, entries)
}

// CheckMap is haproxy.CheckMap on the socket.
func (s SocketMaps) CheckMap(ctx context.Context, path string, entries []haproxy.MapEntry) error {
	return haproxy.CheckMap(ctx, string(s), path, entries)
}

// MapObserver is an Observer that also counts runtime map applies (result ok or error).
type MapObserver interface {
	ObserveMapApply(result string)
}

// Gateways compiles the config's gateways into their haproxy sections and map files, read
// from mapDir (absolute), and reads and validates the certificates of https gateways, whose
// directories are certDir/GATEWAY (their binds read certDir/GATEWAY/crt-list.txt). Nothing is
// written: install writes the files (WriteMaps, WriteCerts). Without gateways all are empty.
func Gateways(c *config.Config, mapDir, certDir string) (string, map[string]render.MapFile, []render.CertSet, error) {
	if len(c.Gateways) == 0 {
		return "", nil, nil, nil
	}
	comp, err := gateway.Compile(c.Gateways, c.Targets())
	if err != nil {
		return "", nil, nil, fmt.Errorf("compile gateways: %w", err)
	}
	var certs []render.CertSet
	for i, f := range comp.Frontends {
		g := c.Gateways[f.Gateway]
		if g.Protocol != "https" {
			continue
		}
		own := make(map[string]string, len(g.Domains))
		for host, d := range g.Domains {
			own[host] = d.Certificate
		}
		dir := haproxy.CertDir(filepath.Join(certDir, f.Gateway))
		if strings.ContainsAny(string(dir), " \t\r\n\"#\\") {
			return "", nil, nil, fmt.Errorf("certificate directory %q: want a path without spaces, quotes, # or backslashes", dir)
		}
		set := render.CertSet{Dir: dir, PEMs: map[string][]byte{}}
		// The API refuses a bad certificate before saving; one that goes bad later (a file
		// edited, expired) must not stop every other change: its domain keeps the copy haproxy
		// serves (the last good one), else gets the default certificate, and a warning says so.
		for host, src := range haproxy.CertSources(g.Certificates, own) {
			pems, warns, err := haproxy.LoadCerts(map[string]string{host: src}, time.Now())
			if err != nil {
				if old, rerr := os.ReadFile(dir.CertPath(host)); rerr == nil {
					pems = map[string][]byte{host: old}
					warns = []string{fmt.Sprintf("%v: the domain keeps its last good certificate", err)}
				} else {
					warns = []string{fmt.Sprintf("%v: the domain gets the default certificate", err)}
				}
			}
			maps.Copy(set.PEMs, pems)
			for _, w := range warns {
				set.Warnings = append(set.Warnings, "gateway "+f.Gateway+": "+w)
			}
		}
		slices.Sort(set.Warnings)
		comp.Frontends[i].BindExtra = "ssl crt-list " + dir.CrtList()
		certs = append(certs, set)
	}
	text, err := gateway.RenderScaffold(mapDir, comp)
	if err != nil {
		return "", nil, nil, err
	}
	files := make(map[string]render.MapFile, len(comp.Maps))
	for _, name := range comp.MapNames() {
		files[gateway.MapPath(mapDir, name)] = render.MapFile{Entries: comp.Maps[name], Bytes: comp.MapFile(name)}
	}
	return text, files, certs, nil
}

// WriteCerts writes the https gateways' certificate directories (haproxy.WriteCertDir: the
// validated PEMs, the default certificate, the crt-list) and returns what changed on disk.
func WriteCerts(sets []render.CertSet) ([]CertUpdate, error) {
	var out []CertUpdate
	for _, s := range sets {
		changes, err := haproxy.WriteCertDir(s.Dir, s.PEMs)
		if err != nil {
			return out, err
		}
		for _, c := range changes {
			out = append(out, CertUpdate{CrtList: s.Dir.CrtList(), CertChange: c})
		}
	}
	return out, nil
}

// CertUpdate is a certificate change of one https gateway's crt-list.
type CertUpdate struct {
	CrtList string
	haproxy.CertChange
}

// WriteMaps writes map files (atomically, each only when its bytes differ from the disk's)
// and reports which ones it wrote. They are renamed into place but not fsynced: they are
// derived data (the definitions they come from are durable), every clbd start writes them
// again from the definitions and checks haproxy's loaded maps against them, and an fsync
// per map would sit on the path of every route change.
func WriteMaps(files map[string]render.MapFile) ([]string, error) {
	var wrote []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		f := files[path]
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.Bytes) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return wrote, fmt.Errorf("map directory: %w", err)
		}
		if err := writeRename(path, f.Bytes); err != nil {
			return wrote, fmt.Errorf("write map %s: %w", path, err)
		}
		wrote = append(wrote, path)
	}
	return wrote, nil
}

// writeRename replaces path with data through a temporary file in its directory and a
// rename: readers (haproxy) see the old or the new file, never a part.
func writeRename(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// changedMaps lists the maps whose contents differ from what haproxy is known to have loaded
// (all of them when that is not known).
func (r *Reconciler) changedMaps(files map[string]render.MapFile) []string {
	var out []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if old, ok := r.loadedMaps[path]; !ok || !bytes.Equal(old, files[path].Bytes) {
			out = append(out, path)
		}
	}
	return out
}

// applyMaps brings haproxy's loaded maps to files through the runtime API, in the order of
// gateway.PlanMaps (a domain moving between the tree maps and a regex shard is never without
// its routes: the route maps get its new entries first, domains.map flips it, then the old
// ones go). The maps of paths whose loaded contents are not known are checked first
// (CheckMap) and applied whole when they differ. It returns how many ApplyMap it made; on the
// first error it stops (the caller reloads: the files are right).
func (r *Reconciler) applyMaps(ctx context.Context, files map[string]render.MapFile, paths []string) (int, error) {
	if r.loadedMaps == nil {
		r.loadedMaps = map[string][]byte{}
	}
	check := map[string]bool{}
	for _, p := range paths {
		check[p] = true
	}
	loaded := make(map[string][]haproxy.MapEntry, len(files))
	want := make(map[string][]haproxy.MapEntry, len(files))
	for path, f := range files {
		want[path] = f.Entries
		if old, ok := r.loadedMaps[path]; ok {
			loaded[path] = haproxy.ParseMap(old)
		} else if check[path] && r.maps.CheckMap(ctx, path, f.Entries) == nil {
			r.loadedMaps[path] = f.Bytes
			loaded[path] = f.Entries
		}
	}
	applied := 0
	for _, u := range gateway.PlanMaps(loaded, want) {
		err := r.maps.ApplyMap(ctx, u.Map, u.Entries)
		r.observeMap(err)
		if err != nil {
			delete(r.loadedMaps, u.Map) // not known any more: checked again next time
			return applied, fmt.Errorf("runtime map %s: %w", filepath.Base(u.Map), err)
		}
		r.loadedMaps[u.Map] = haproxy.FormatMap(u.Entries)
		applied++
	}
	return applied, nil
}

func (r *Reconciler) observeMap(err error) {
	mo, ok := r.metrics.(MapObserver)
	if !ok {
		return
	}
	if err != nil {
		mo.ObserveMapApply("error")
	} else {
		mo.ObserveMapApply("ok")
	}
}

// verifyMaps checks, after a reload, that haproxy loaded every map as the files hold it, and
// applies the ones that differ (a reload reads the files, so this only repairs what a hand
// edit or a concurrent writer changed). It records what haproxy holds.
func (r *Reconciler) verifyMaps(ctx context.Context, files map[string]render.MapFile) error {
	r.loadedMaps = map[string][]byte{}
	if r.maps == nil {
		for path, f := range files {
			r.loadedMaps[path] = f.Bytes
		}
		return nil
	}
	n, err := r.applyMaps(ctx, files, slices.Sorted(maps.Keys(files)))
	if n > 0 {
		r.log.Warn("haproxy's maps differed from the map files after a reload; applied the files", "maps", n)
	}
	if err != nil {
		r.loadedMaps = nil // unknown: check again at the next apply
	}
	return err
}

// removeStaleMaps deletes map files of mapDir that the installed config no longer reads
// (a gateway removed), after haproxy runs without them.
func (r *Reconciler) removeStaleMaps(files map[string]render.MapFile) {
	entries, err := os.ReadDir(r.mapDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(r.mapDir, e.Name())
		if _, ok := files[path]; !ok && strings.HasSuffix(e.Name(), ".map") {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				r.log.Warn("remove unused map file", "path", path, "err", err)
			}
		}
	}
}

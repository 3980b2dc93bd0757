package agent

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"gopkg.in/yaml.v3"

	"clb/internal/atomicfile"
)

// defsFileName holds what the API defines, beside the membership state: services defined with
// PUT /v1/services/{service} and zones taken out of rotation.
const defsFileName = "definitions.yaml"

// defs is the durable part of the config that the API changes. Services in the config file
// win over services of the same name defined through the API (PUT answers 409 for them).
type defs struct {
	path string

	mu   sync.Mutex
	file defsFile
	// remote, when set, holds the definitions instead of path (etcd; see storage.go);
	// remoteRaw is the document file was read from.
	remote interface {
		Definitions() []byte
		UpdateDefinitions(fn func(old []byte) ([]byte, error)) error
	}
	remoteRaw []byte
}

type defsFile struct {
	Services map[string]Service `yaml:"services,omitempty"`
	// DisabledZones by service.
	DisabledZones map[string][]string `yaml:"disabled_zones,omitempty"`
}

func openDefs(dir string) (*defs, error) {
	d := &defs{path: filepath.Join(dir, defsFileName)}
	data, err := os.ReadFile(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d.file); err != nil {
		return nil, fmt.Errorf("read %s: %w", d.path, err)
	}
	return d, nil
}

// snapshot returns a deep enough copy: callers may not change the services' slices.
func (d *defs) snapshot() defsFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := defsFile{Services: maps.Clone(d.file.Services), DisabledZones: map[string][]string{}}
	for k, v := range d.file.DisabledZones {
		out.DisabledZones[k] = slices.Clone(v)
	}
	return out
}

// update changes the definitions with fn and saves them; nothing changes if fn or the save fails.
func (d *defs) update(fn func(f *defsFile) error) error {
	if d.remote != nil {
		return d.updateRemote(fn)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := defsFile{Services: maps.Clone(d.file.Services), DisabledZones: maps.Clone(d.file.DisabledZones)}
	if next.Services == nil {
		next.Services = map[string]Service{}
	}
	if next.DisabledZones == nil {
		next.DisabledZones = map[string][]string{}
	}
	if err := fn(&next); err != nil {
		return err
	}
	data, err := yaml.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode definitions: %w", err)
	}
	if err := atomicfile.Write(d.path, data, 0o640); err != nil {
		return fmt.Errorf("save definitions: %w", err)
	}
	d.file = next
	return nil
}

// setServices recomputes the running config from the config file's services and the API's
// definitions, validates the result (a listener an API service uses may now be taken by the
// file) and makes it current.
func (a *Agent) setServices(file map[string]Service) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	if file == nil {
		file = a.fileServices
	}
	d := a.defs.snapshot()
	next := *a.config()
	next.Services = maps.Clone(file)
	if next.Services == nil {
		next.Services = map[string]Service{}
	}
	for name, svc := range d.Services {
		if _, inFile := file[name]; inFile {
			a.log.Warn("service defined in the config file and through the API: the config file wins", "service", name)
			continue
		}
		next.Services[name] = cloneService(svc)
	}
	next.DisabledZones = d.DisabledZones
	if err := next.Validate(); err != nil {
		return err
	}
	a.fileServices = file
	a.cfg.Store(&next)
	return nil
}

func cloneService(s Service) Service {
	s.Listeners = slices.Clone(s.Listeners)
	if s.HealthCheck != nil {
		hc := *s.HealthCheck
		s.HealthCheck = &hc
	}
	return s
}

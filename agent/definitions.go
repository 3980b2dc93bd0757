package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"clb/agent/config"
	"clb/agent/defs"
	"clb/internal/gateway"
)

// The core's side of definitions: what every front calls to define services and take zones
// out of rotation (api.Definitions). A change is saved, then made the running config; a change
// that makes the running config invalid (a listener already used, say) is undone and refused
// with defs.ErrInvalid. The caller then asks the reconciler to apply it.

// DefineService defines or replaces a service through the API.
func (a *Agent) DefineService(name string, svc config.Service) error {
	if a.isFileService(name) {
		return fmt.Errorf("service %s: %w; change it there", name, defs.ErrFileService)
	}
	return a.changeDefs(func(f *defs.File) error {
		f.Services[name] = svc
		return nil
	})
}

// RemoveService removes a service defined through the API. Its members stay in the state, so
// defining the service again brings them back.
func (a *Agent) RemoveService(name string) error {
	if a.isFileService(name) {
		return fmt.Errorf("service %s: %w; remove it there", name, defs.ErrFileService)
	}
	return a.changeDefs(func(f *defs.File) error {
		if _, ok := f.Services[name]; !ok {
			return fmt.Errorf("unknown service %q: %w", name, defs.ErrNotDefined)
		}
		delete(f.Services, name)
		return nil
	})
}

// SetZone takes a zone of a service out of rotation (its members get weight 0: no new
// requests, in-flight ones finish) or puts it back.
func (a *Agent) SetZone(service, zone string, enabled bool) error {
	return a.changeDefs(func(f *defs.File) error {
		zones := slices.DeleteFunc(slices.Clone(f.DisabledZones[service]), func(z string) bool { return z == zone })
		if !enabled {
			zones = append(zones, zone)
			slices.Sort(zones)
		}
		if len(zones) == 0 {
			delete(f.DisabledZones, service)
		} else {
			f.DisabledZones[service] = zones
		}
		return nil
	})
}

func (a *Agent) isFileService(name string) bool {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	_, ok := a.fileServices[name]
	return ok
}

// changeDefs saves a definitions change and makes it the running config; a change that makes
// the config invalid is undone.
func (a *Agent) changeDefs(fn func(f *defs.File) error) error {
	before := a.defs.Snapshot()
	if err := a.defs.Update(fn); err != nil {
		return err
	}
	if err := a.setServices(nil, nil); err != nil {
		if rerr := a.defs.Update(func(f *defs.File) error { *f = before; return nil }); rerr != nil {
			a.log.Error("undo definitions change", "err", rerr)
		}
		return fmt.Errorf("%w: %w", defs.ErrInvalid, err)
	}
	return nil
}

// setServices recomputes the running config from the config file's services and gateways
// (file, fileGateways; nil: the ones in use) and the API's definitions, and makes it current.
func (a *Agent) setServices(file map[string]config.Service, fileGateways map[string]gateway.Gateway) error {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	if file == nil {
		file = a.fileServices
	}
	if fileGateways == nil {
		fileGateways = a.fileGateways
	}
	d := a.defs.Snapshot()
	next, shadowed, err := config.MergeAll(a.config(), config.Sources{
		FileServices: file, Services: d.Services, DisabledZones: d.DisabledZones,
		FileGateways: fileGateways, Gateways: d.Gateways,
	})
	for _, name := range shadowed {
		if gw, ok := strings.CutPrefix(name, "gateway "); ok {
			a.log.Warn("gateway defined in the config file and through the API: the config file wins", "gateway", gw)
			continue
		}
		a.log.Warn("service defined in the config file and through the API: the config file wins", "service", name)
	}
	if err != nil {
		return err
	}
	if err := a.mergeGroups(next, d); err != nil {
		return err
	}
	a.fileServices = maps.Clone(file)
	a.fileGateways = maps.Clone(fileGateways)
	if a.fileGateways == nil {
		a.fileGateways = map[string]gateway.Gateway{}
	}
	a.cfg.Store(next)
	return nil
}

// Definitions returns the definitions as saved: services defined through the APIs, disabled
// zones, the instance registry and the AWS API's load balancer attributes.
func (a *Agent) Definitions() defs.File { return a.defs.Snapshot() }

// UpdateDefinitions changes the definitions of one service in one step (its service, ELB
// attributes and disabled zones; service "" for none, e.g. the instance registry): saved,
// made the running config, undone when the result is invalid. A service of the config file
// is refused with defs.ErrFileService.
func (a *Agent) UpdateDefinitions(service string, fn func(f *defs.File) error) error {
	if service != "" && a.isFileService(service) {
		return fmt.Errorf("service %s: %w; change it there", service, defs.ErrFileService)
	}
	return a.changeDefs(fn)
}

// PutInstance announces (or updates) an instance in the registry.
func (a *Agent) PutInstance(id string, in defs.Instance) error {
	return a.changeDefs(func(f *defs.File) error {
		f.Instances[id] = in
		return nil
	})
}

package config

import (
	"maps"
	"slices"

	"clb/internal/gateway"
)

// Merge is the one place the running config is made: base's settings (the config file and
// flags), the config file's services, the services defined through the API and the zones
// disabled through it. A service both define is the config file's (the API refuses to change
// it); shadowed lists those names so the caller can say so. The result has its defaults
// filled and is validated as a whole (a listener an API service uses may now be taken by the
// file); base and the maps given are not changed.
func Merge(base *Config, file, defined map[string]Service, disabled map[string][]string) (merged *Config, shadowed []string, err error) {
	return MergeAll(base, Sources{FileServices: file, Services: defined, DisabledZones: disabled, FileGateways: base.Gateways})
}

// Sources are what the running config is made of, beside base's settings.
type Sources struct {
	// FileServices and FileGateways are the config file's; Services and Gateways those
	// defined through the API; DisabledZones the zones disabled through it.
	FileServices, Services map[string]Service
	FileGateways, Gateways map[string]gateway.Gateway
	DisabledZones          map[string][]string
}

// MergeAll is Merge with gateways: a gateway both the config file and the API define is the
// config file's (the API refuses to change it) and is listed in shadowed as "gateway NAME".
// Gateways are validated with the merged services: a route to a service that neither
// defines is an error.
func MergeAll(base *Config, src Sources) (merged *Config, shadowed []string, err error) {
	file, defined, disabled := src.FileServices, src.Services, src.DisabledZones
	next := *base
	next.Gateways = make(map[string]gateway.Gateway, len(src.FileGateways)+len(src.Gateways))
	maps.Copy(next.Gateways, src.FileGateways)
	for _, name := range slices.Sorted(maps.Keys(src.Gateways)) {
		if _, inFile := src.FileGateways[name]; inFile {
			shadowed = append(shadowed, "gateway "+name)
			continue
		}
		next.Gateways[name] = src.Gateways[name]
	}
	next.Services = make(map[string]Service, len(file)+len(defined))
	maps.Copy(next.Services, file)
	for _, name := range slices.Sorted(maps.Keys(defined)) {
		if _, inFile := file[name]; inFile {
			shadowed = append(shadowed, name)
			continue
		}
		next.Services[name] = defined[name]
	}
	next.DisabledZones = make(map[string][]string, len(disabled))
	for svc, zones := range disabled {
		next.DisabledZones[svc] = slices.Clone(zones)
	}
	next.SetDefaults()
	if err := next.Validate(); err != nil {
		return nil, shadowed, err
	}
	return &next, shadowed, nil
}

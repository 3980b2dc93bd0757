package config

import (
	"maps"
	"slices"
)

// Merge is the one place the running config is made: base's settings (the config file and
// flags), the config file's services, the services defined through the API and the zones
// disabled through it. A service both define is the config file's (the API refuses to change
// it); shadowed lists those names so the caller can say so. The result has its defaults
// filled and is validated as a whole (a listener an API service uses may now be taken by the
// file); base and the maps given are not changed.
func Merge(base *Config, file, defined map[string]Service, disabled map[string][]string) (merged *Config, shadowed []string, err error) {
	next := *base
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

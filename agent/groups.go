package agent

import (
	"clb/agent/config"
	"clb/agent/defs"
)

// fileGroups are the launch configurations and groups of the config file, kept apart from
// those the AWS API defines (in defs), which are merged over them into the running config.
// Groups and launchers in the config file are read at start (a restart applies changes).
type fileGroups struct {
	lcs    map[string]config.LaunchConfiguration
	groups map[string]config.Group
}

// mergeGroups lays the API's launch configurations and groups over the config file's into
// next; the caller holds cfgMu.
func (a *Agent) mergeGroups(next *config.Config, d defs.File) error {
	if a.fileGroups == nil {
		cur := a.config()
		a.fileGroups = &fileGroups{lcs: cur.LaunchConfigurations, groups: cur.Groups}
	}
	next.LaunchConfigurations, next.Groups = a.fileGroups.lcs, a.fileGroups.groups
	return next.MergeGroups(d.LaunchConfigurations, d.Groups)
}

// fileGroupsNow returns the config file's groups (nil before the first merge).
func (a *Agent) fileGroupsNow() *fileGroups {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return a.fileGroups
}

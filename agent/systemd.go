package agent

import "clb/internal/sdnotify"

// notifySystemd tells systemd (Type=notify units, see packaging/) that clbd is ready: the API
// listens and haproxy runs its config. Outside systemd it does nothing.
func (a *Agent) notifySystemd(state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		a.log.Warn("notify systemd", "err", err)
	}
}

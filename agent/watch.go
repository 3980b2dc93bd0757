package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/fsnotify/fsnotify"

	"clb/agent/config"
	"clb/internal/render"
	"clb/templates"
)

// templateSource names the template an apply would use now.
func templateSource(dir string) string {
	if dir != "" {
		p := filepath.Join(dir, templates.Name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return render.BuiltIn
}

// watchedFile is a file clbd reacts to: fn runs after every change of it (Create, Write, Rename,
// Remove, Chmod), and once right after the watch is set up, so no change is missed.
type watchedFile struct {
	path string
	what string
	fn   func()
}

// watch is clbd's one file watcher: the template (re-apply), the config file (reload services)
// and the keys file (reload keys). It watches directories, not files, because editors and
// atomic writers replace files by renaming.
func (a *Agent) watch(ctx context.Context) error {
	cfg := a.config()
	var files []watchedFile
	if cfg.Templates != "" {
		if err := os.MkdirAll(cfg.Templates, 0o755); err != nil {
			a.log.Warn("templates dir is missing and cannot be created; template changes are not watched", "path", cfg.Templates, "err", err)
		} else {
			files = append(files, watchedFile{filepath.Join(cfg.Templates, templates.Name), "template", func() { a.rec.Trigger() }})
		}
	}
	if a.opts.ConfigPath != "" && a.opts.Reload != nil {
		files = append(files, watchedFile{a.opts.ConfigPath, "config file", a.reloadConfig})
	}
	// Keys come from the keys file and the password file. A file renamed away is followed by
	// the Create of the new one: only react to events that leave a file there.
	for _, kf := range []struct{ path, what string }{{cfg.KeysFile, "keys file"}, {config.PasswordPath(cfg), "password file"}} {
		if kf.path == "" {
			continue
		}
		path := kf.path
		files = append(files, watchedFile{path, kf.what, func() {
			if _, err := os.Stat(path); err == nil {
				a.reloadKeys()
			}
		}})
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Close()
	watched := map[string]watchedFile{}
	for _, f := range files {
		if err := w.Add(filepath.Dir(f.path)); err != nil {
			a.log.Warn("cannot watch "+f.what+"; changes need a restart", "path", f.path, "err", err)
			continue
		}
		watched[filepath.Clean(f.path)] = f
	}
	// First read after the watch: anything changed between start-up and now is picked up.
	for _, f := range watched {
		f.fn()
	}
	a.rec.Trigger()

	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			a.log.Warn("watch error", "err", err)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if f, ok := watched[filepath.Clean(ev.Name)]; ok {
				a.log.Debug(f.what+" changed", "path", f.path, "op", ev.Op.String())
				f.fn()
			}
		}
	}
}

// reloadConfig re-reads the config file. Services and gateways take effect at once; settings that need a
// restart (listen, state_dir, managed, ...) are reported and left as they are. A broken file
// is reported and the running config stays.
func (a *Agent) reloadConfig() {
	next, err := a.opts.Reload()
	if err == nil {
		next.SetDefaults()
		err = next.Validate()
	}
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		a.log.Error("config file not reloaded; keeping the running config", "path", a.opts.ConfigPath, "err", err)
		return
	}
	cur := a.config()
	// Only services are hot-reloaded; compare the rest to say when a restart is needed.
	rest, curRest := *next, *cur
	rest.Services, rest.DisabledZones, rest.Output, rest.Gateways = nil, nil, "", nil
	curRest.Services, curRest.DisabledZones, curRest.Output, curRest.Gateways = nil, nil, "", nil
	// The running groups include the AWS API's (groups.go): compare the file's with the file's.
	if fg := a.fileGroupsNow(); fg != nil {
		curRest.Groups, curRest.LaunchConfigurations = fg.groups, fg.lcs
	}
	if !reflect.DeepEqual(rest, curRest) {
		a.log.Warn("config file changed settings other than services; restart clbd to apply them", "path", a.opts.ConfigPath)
	}
	a.cfgMu.Lock()
	same := reflect.DeepEqual(next.Services, a.fileServices) && reflect.DeepEqual(fileGatewaysOf(next), a.fileGateways)
	a.cfgMu.Unlock()
	if same {
		return
	}
	if err := a.setServices(next.Services, fileGatewaysOf(next)); err != nil {
		a.log.Error("config file not reloaded; keeping the running config", "path", a.opts.ConfigPath, "err", err)
		return
	}
	merged := a.config()
	a.log.Info("config reloaded", "path", a.opts.ConfigPath, "services", len(merged.Services))
	a.rec.Trigger()
}

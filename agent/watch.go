package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/fsnotify/fsnotify"

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

// watch re-applies when the template changes and reloads services when the config file
// changes. It watches directories, not files, because editors and atomic writers replace files
// by renaming; the first read happens after the watch is set up so no change is missed.
func (a *Agent) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Close()
	cfg := a.config()
	tmplFile := ""
	if cfg.Templates != "" {
		if err := os.MkdirAll(cfg.Templates, 0o755); err != nil {
			a.log.Warn("templates dir is missing and cannot be created; template changes are not watched", "path", cfg.Templates, "err", err)
		} else if err := w.Add(cfg.Templates); err != nil {
			a.log.Warn("cannot watch templates dir", "path", cfg.Templates, "err", err)
		} else {
			tmplFile = filepath.Join(cfg.Templates, templates.Name)
		}
	}
	cfgFile := ""
	if a.opts.ConfigPath != "" && a.opts.Reload != nil {
		if err := w.Add(filepath.Dir(a.opts.ConfigPath)); err != nil {
			a.log.Warn("cannot watch config dir", "path", a.opts.ConfigPath, "err", err)
		} else {
			cfgFile = filepath.Clean(a.opts.ConfigPath)
		}
	}
	// First read after the watch: anything changed between start-up and now is picked up.
	if cfgFile != "" {
		a.reloadConfig()
	}
	a.rec.trigger()

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
			if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Remove) {
				continue
			}
			switch filepath.Clean(ev.Name) {
			case tmplFile:
				a.log.Info("template changed", "path", ev.Name)
				a.rec.trigger()
			case cfgFile:
				a.reloadConfig()
			}
		}
	}
}

// reloadConfig re-reads the config file. Services take effect at once; settings that need a
// restart (listen, state_dir, managed, ...) are reported and left as they are. A broken file
// is reported and the running config stays.
func (a *Agent) reloadConfig() {
	next, err := a.opts.Reload()
	if err == nil {
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
	rest.Services, rest.DisabledZones, rest.Output = nil, nil, ""
	curRest.Services, curRest.DisabledZones, curRest.Output = nil, nil, ""
	if !reflect.DeepEqual(rest, curRest) {
		a.log.Warn("config file changed settings other than services; restart clbd to apply them", "path", a.opts.ConfigPath)
	}
	a.cfgMu.Lock()
	same := reflect.DeepEqual(next.Services, a.fileServices)
	a.cfgMu.Unlock()
	if same {
		return
	}
	if err := a.setServices(next.Services); err != nil {
		a.log.Error("config file not reloaded; keeping the running config", "path", a.opts.ConfigPath, "err", err)
		return
	}
	merged := a.config()
	a.log.Info("config reloaded", "path", a.opts.ConfigPath, "services", len(merged.Services))
	a.rec.trigger()
}

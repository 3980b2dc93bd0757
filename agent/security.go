package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"clb/agent/config"
	"clb/internal/auth"
	"clb/internal/ratelimit"
)

// security is the agent's authentication state: the keys (swapped as a whole on reload), the
// verifier with its replay cache and the per-source limiter of failed authentications, shared
// by every front.
type security struct {
	keys     *auth.Keyring
	verifier *auth.Verifier
	limiter  *ratelimit.Limiter
}

// AuthFailures is the number of requests refused because their signature was missing,
// stale, replayed or invalid since the agent started, and of console logins refused for a
// wrong key or secret.
func (a *Agent) AuthFailures() uint64 {
	if a.api == nil {
		return 0
	}
	n := a.api.AuthFailures()
	if a.aws != nil {
		n += a.aws.AuthFailures()
	}
	if a.console != nil {
		n += a.console.LoginFailures()
	}
	return n
}

// AuthRateLimited is the number of requests (API calls and console logins) refused with 429
// because their source had too many failed authentications.
func (a *Agent) AuthRateLimited() uint64 {
	if a.api == nil {
		return 0
	}
	n := a.api.AuthRateLimited()
	if a.console != nil {
		n += a.console.LoginRateLimited()
	}
	return n
}

// KeyIDs returns the ids of the API keys in use, sorted (never their secrets).
func (a *Agent) KeyIDs() []string {
	if a.sec.keys == nil {
		return nil
	}
	return a.sec.keys.IDs()
}

// setupSecurity loads the keys and prepares the verifier and the limiter.
func (a *Agent) setupSecurity(cfg *config.Config) error {
	keys, err := a.readKeys(cfg, true)
	if err != nil {
		return err
	}
	a.sec.keys = auth.NewKeyring(keys)
	a.sec.verifier = auth.New(a.sec.keys)
	a.sec.limiter = ratelimit.New(cfg.AuthFailBurst, cfg.AuthFailRefill, 0, nil)
	a.log.Info("API keys loaded", "keys", strings.Join(a.sec.keys.IDs(), ","))
	return nil
}

// readKeys builds the key set: the password file as key "default" (register scope on every
// service) and every key of the keys file. With neither configured, clbd uses
// STATE_DIR/password, generating a random one on first start (the quick start's dev
// password; the log says where it is). first is true at start, false on a hot reload.
func (a *Agent) readKeys(cfg *config.Config, first bool) (map[string]auth.Key, error) {
	keys := map[string]auth.Key{}
	pwPath := config.PasswordPath(cfg)
	if cfg.PasswordFile == "" && pwPath != "" {
		if first {
			if err := generatePassword(pwPath); err == nil {
				a.log.Warn("no password_file or keys_file configured: generated a password for key \"default\"", "path", pwPath)
			} else if !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
		}
	}
	if pwPath != "" {
		pw, err := auth.ReadPasswordFile(pwPath)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(pwPath); err == nil && first {
			if err := auth.CheckPrivateFile(pwPath, fi, os.Getuid()); err != nil {
				a.log.Warn("password file is readable by other users; chmod 600 it", "path", pwPath, "err", err)
			}
		}
		keys[auth.DefaultKeyID] = auth.Key{Signing: auth.DeriveKey(pw), Secret: pw, Scope: auth.ScopeRegisterAll}
	}
	if cfg.KeysFile != "" {
		kf, err := auth.LoadKeysFile(cfg.KeysFile, os.Getuid())
		if err != nil {
			return nil, err
		}
		for id, k := range kf.SigningKeys() {
			if _, ok := keys[id]; ok {
				return nil, fmt.Errorf("keys file %s: key id %q is taken by password_file; rename the key", cfg.KeysFile, id)
			}
			keys[id] = k
		}
	}
	if len(keys) == 0 {
		a.log.Warn("no API keys: every authenticated call will be refused", "path", cfg.KeysFile)
	}
	return keys, nil
}

// generatePassword writes a random password to path unless the file exists (fs.ErrExist).
func generatePassword(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("generate password: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		f.Close()
		return fmt.Errorf("generate password: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(b) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("generate password: %w", err)
	}
	return f.Close()
}

// reloadKeys re-reads the keys (and password) file. A file that is broken or readable by
// other users is reported and the keys in use stay.
func (a *Agent) reloadKeys() {
	cfg := a.config()
	keys, err := a.readKeys(cfg, false)
	if err != nil {
		a.log.Error("keys file not reloaded; keeping the keys in use", "path", cfg.KeysFile, "err", err)
		return
	}
	old := a.sec.keys.IDs()
	a.sec.keys.Set(keys)
	now := a.sec.keys.IDs()
	if slices.Equal(old, now) {
		a.log.Info("keys file reloaded", "path", cfg.KeysFile, "keys", strings.Join(now, ","))
		return
	}
	var added, removed []string
	for _, id := range now {
		if !slices.Contains(old, id) {
			added = append(added, id)
		}
	}
	for _, id := range old {
		if !slices.Contains(now, id) {
			removed = append(removed, id)
		}
	}
	a.log.Info("keys file reloaded", "path", cfg.KeysFile, "keys", strings.Join(now, ","), "added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
}

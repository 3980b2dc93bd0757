package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"syscall"

	"gopkg.in/yaml.v3"
)

// Scope names in the keys file.
const (
	ScopeNameAdmin    = "admin"
	ScopeNameRegister = "register"
)

// MinSecretLen is the shortest secret the keys file accepts. Generated secrets are 64 hex
// characters (32 random bytes).
const MinSecretLen = 16

const maxKeysFileLen = 1 << 20

// ErrInsecureFile is wrapped by the errors of a keys or password file that other users can
// read or that belongs to another user.
var ErrInsecureFile = errors.New("insecure file permissions")

// FileKey is one entry of the keys file.
type FileKey struct {
	ID       string   `yaml:"id"`
	Secret   string   `yaml:"secret"`
	Scope    string   `yaml:"scope"`
	Services []string `yaml:"services,omitempty,flow"`
	// Domains are globs over gateway domains the key may change (register scope only).
	Domains []string `yaml:"domains,omitempty,flow"`
	Created string   `yaml:"created,omitempty"`
}

// KeysFile is the content of a keys file:
//
//	keys:
//	  - id: web-deploy           # 1-64 of A-Z a-z 0-9 . _ -
//	    secret: 5f0c...           # at least 16 characters; the client's password
//	    scope: register           # register | admin
//	    services: [web, "api-*"]  # register scope only: globs over service names
//	    domains: ["*.example.com"] # register scope only: gateway domains it may change
//	    created: 2026-01-02T03:04:05Z
type KeysFile struct {
	Keys []FileKey `yaml:"keys"`
}

// ScopeOf returns the Scope of an entry.
func (k FileKey) ScopeOf() Scope {
	if k.Scope == ScopeNameAdmin {
		return ScopeAdmin
	}
	return Scope{Services: slices.Clone(k.Services), Domains: slices.Clone(k.Domains)}
}

// Validate checks every entry: ids unique and well-formed, secrets long enough, scopes known,
// register keys with at least one valid service glob, admin keys with none. Errors name the
// key id, never the secret.
func (f *KeysFile) Validate() error {
	seen := map[string]bool{}
	var errs []error
	for i, k := range f.Keys {
		where := fmt.Sprintf("key %d", i+1)
		if err := ValidateKeyID(k.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		where = fmt.Sprintf("key %q", k.ID)
		if seen[k.ID] {
			errs = append(errs, fmt.Errorf("%s: listed twice", where))
		}
		seen[k.ID] = true
		if len(k.Secret) < MinSecretLen {
			errs = append(errs, fmt.Errorf("%s: secret is shorter than %d characters", where, MinSecretLen))
		}
		if len(k.Secret) > maxPasswordLen || bytes.ContainsAny([]byte(k.Secret), "\r\n") || k.Secret != string(bytes.TrimSpace([]byte(k.Secret))) {
			errs = append(errs, fmt.Errorf("%s: secret must be one line without surrounding spaces", where))
		}
		switch k.Scope {
		case ScopeNameAdmin:
			if len(k.Services) > 0 || len(k.Domains) > 0 {
				errs = append(errs, fmt.Errorf("%s: an admin key takes no services or domains (it may use all)", where))
			}
		case ScopeNameRegister:
			if len(k.Services) == 0 && len(k.Domains) == 0 {
				errs = append(errs, fmt.Errorf("%s: a register key needs services (globs such as web or \"api-*\"; \"*\" for all) or domains (globs such as \"*.example.com\")", where))
			}
			for _, g := range k.Domains {
				if err := ValidateDomainGlob(g); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
				}
			}
			for _, g := range k.Services {
				if err := ValidateServiceGlob(g); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
				}
			}
		default:
			errs = append(errs, fmt.Errorf("%s: scope %q: want %s or %s", where, clip(k.Scope), ScopeNameRegister, ScopeNameAdmin))
		}
	}
	return errors.Join(errs...)
}

// Find returns the index of the key id, or -1.
func (f *KeysFile) Find(id string) int {
	return slices.IndexFunc(f.Keys, func(k FileKey) bool { return k.ID == id })
}

// SigningKeys derives the signing keys of every entry.
func (f *KeysFile) SigningKeys() map[string]Key {
	m := make(map[string]Key, len(f.Keys))
	for _, k := range f.Keys {
		m[k.ID] = Key{Signing: DeriveKey([]byte(k.Secret)), Secret: []byte(k.Secret), Scope: k.ScopeOf()}
	}
	return m
}

// Marshal encodes the file as YAML with a header comment.
func (f *KeysFile) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# clbd API keys: managed with `clbd keys add|list|rotate|revoke`. Mode 0600, owned by clbd's user.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if f.Keys == nil {
		f.Keys = []FileKey{}
	}
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode keys file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode keys file: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseKeysFile decodes and validates keys file data. Unknown fields are errors. Decoding
// errors are stripped of quoted values so that a misplaced secret never reaches a log.
func ParseKeysFile(data []byte) (*KeysFile, error) {
	var f KeysFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, errors.New(redactYAML(err.Error()))
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

var quotedValue = regexp.MustCompile("`[^`]*`")

// redactYAML removes the values yaml.v3 quotes in backticks from an error message.
func redactYAML(msg string) string {
	return quotedValue.ReplaceAllString(msg, "`...`")
}

// CheckPrivateFile refuses a file that is not a regular file, that group or others may read or
// write, or that belongs to a user other than uid: such a file may hold secrets someone else
// has read or planted.
func CheckPrivateFile(path string, fi os.FileInfo, uid int) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: not a regular file", path, ErrInsecureFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %w: mode %04o lets other users read or change it; run chmod 600 %s", path, ErrInsecureFile, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("%s: %w: owned by uid %d, not by clbd's uid %d; run chown to clbd's user", path, ErrInsecureFile, st.Uid, uid)
	}
	return nil
}

// LoadKeysFile reads a keys file after checking that only uid can read it (CheckPrivateFile).
func LoadKeysFile(path string, uid int) (*KeysFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read keys file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read keys file: %w", err)
	}
	if err := CheckPrivateFile(path, fi, uid); err != nil {
		return nil, fmt.Errorf("keys file %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("read keys file %s: %w", path, err)
	}
	if len(data) > maxKeysFileLen {
		return nil, fmt.Errorf("read keys file %s: larger than %d bytes", path, maxKeysFileLen)
	}
	kf, err := ParseKeysFile(data)
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return kf, nil
}

// NewSecret returns 32 bytes from crypto/rand as 64 hex characters.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

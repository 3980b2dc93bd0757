package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Store types.
const (
	StoreLocal = "local"
	StoreEtcd  = "etcd"
)

// StoreConfig is the `store:` section: where the membership lives. The default, local, is
// STATE_DIR/state.json; etcd shares one membership between several clbd nodes.
type StoreConfig struct {
	// Type is local (default) or etcd.
	Type string `yaml:"type"`
	// Endpoints are etcd's client URLs (http://10.0.0.1:2379 or host:port, https with tls).
	Endpoints []string `yaml:"endpoints"`
	// Prefix starts every key clbd writes, default /clb/: several fleets can share an etcd.
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds connecting to etcd and the probe that tells whether it answers
	// (default 2s); one read or write gets twice as long. A registration while etcd is known
	// to be unreachable fails at once.
	DialTimeout  time.Duration  `yaml:"dial_timeout"`
	Username     string         `yaml:"username"`
	Password     string         `yaml:"password"`
	PasswordFile string         `yaml:"password_file"`
	TLS          StoreTLSConfig `yaml:"tls"`
}

// StoreTLSConfig says how clbd verifies etcd (CA) and which client certificate it shows.
type StoreTLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

const defaultStorePrefix = "/clb/"

// validate checks the store section (defaults filled); errors name the key.
func (s StoreConfig) validate() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("store."+format, args...)) }
	switch s.Type {
	case StoreLocal:
		if len(s.Endpoints) > 0 || s.Prefix != "" || s.Username != "" || s.Password != "" || s.PasswordFile != "" ||
			s.TLS != (StoreTLSConfig{}) || s.DialTimeout != 0 {
			fail("type local takes no other setting (endpoints, prefix, ... are for type etcd)")
		}
		return errs
	case StoreEtcd:
	default:
		fail("type %q: want local or etcd", s.Type)
		return errs
	}
	if len(s.Endpoints) == 0 {
		fail("endpoints: type etcd needs at least one endpoint, e.g. http://10.0.0.1:2379")
	}
	for i, e := range s.Endpoints {
		if err := checkEndpoint(e); err != nil {
			fail("endpoints[%d] %q: %v", i, e, err)
		}
	}
	if !strings.HasPrefix(s.Prefix, "/") || !strings.HasSuffix(s.Prefix, "/") || len(s.Prefix) > 128 ||
		strings.ContainsFunc(s.Prefix, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		fail("prefix %q: want a path that starts and ends with /, printable ASCII, at most 128 bytes", s.Prefix)
	}
	if s.DialTimeout < 100*time.Millisecond || s.DialTimeout > time.Minute {
		fail("dial_timeout %s: want 100ms-1m", s.DialTimeout)
	}
	if s.Password != "" && s.PasswordFile != "" {
		fail("password and password_file: give one")
	}
	if s.Username == "" && (s.Password != "" || s.PasswordFile != "") {
		fail("password without username")
	}
	if s.Username != "" && s.Password == "" && s.PasswordFile == "" {
		fail("username %q without password or password_file", s.Username)
	}
	if (s.TLS.Cert == "") != (s.TLS.Key == "") {
		fail("tls: cert and key go together")
	}
	return errs
}

func checkEndpoint(e string) error {
	host := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return err
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("scheme %q: want http or https", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.User != nil || u.RawQuery != "" {
			return errors.New("want scheme://host:port and nothing more")
		}
		host = u.Host
	}
	if _, port, err := net.SplitHostPort(host); err != nil || port == "" {
		return errors.New("want host:port (etcd's client port is usually 2379)")
	}
	return nil
}

// TLSConfig builds the TLS settings for etcd: nil when no endpoint uses https and no TLS
// file is given.
func (s *StoreConfig) TLSConfig() (*tls.Config, error) {
	https := false
	for _, e := range s.Endpoints {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && s.TLS == (StoreTLSConfig{}) {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLS.CA != "" {
		pem, err := os.ReadFile(s.TLS.CA)
		if err != nil {
			return nil, fmt.Errorf("store.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store.tls.ca %s: no PEM certificate in it", s.TLS.CA)
		}
		tc.RootCAs = pool
	}
	if s.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(s.TLS.Cert, s.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("store.tls cert/key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// PasswordValue returns the etcd password, from the file when one is given.
func (s *StoreConfig) PasswordValue() (string, error) {
	if s.PasswordFile == "" {
		return s.Password, nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.password_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

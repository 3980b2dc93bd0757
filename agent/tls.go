package agent

import (
	"clb/agent/config"

	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the API's certificate and re-reads tls_cert and tls_key when either
// file changes, so a renewed certificate (certbot, an ACME client) applies to the next
// handshake without a restart. A broken new pair is logged and the previous one stays.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		s.ino = st.Ino()
	}
	return s, nil
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the pair; the caller holds mu or is the constructor.
func (c *certReloader) load() error {
	cs, err := stamp(c.certFile)
	if err != nil {
		return fmt.Errorf("tls_cert: %w", err)
	}
	ks, err := stamp(c.keyFile)
	if err != nil {
		return fmt.Errorf("tls_key: %w", err)
	}
	if fi, err := os.Stat(c.keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		c.log.Warn("tls_key is readable by other users; chmod 600 it", "path", c.keyFile, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.certStamp, c.keyStamp = &pair, cs, ks
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current pair, re-read first if a file
// changed since it was loaded.
func (c *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err1 := stamp(c.certFile)
	ks, err2 := stamp(c.keyFile)
	if err1 == nil && err2 == nil && (cs != c.certStamp || ks != c.keyStamp) {
		prev := c.cert
		if err := c.load(); err != nil {
			// Keep serving the old pair, and try again only when a file changes again (a
			// certificate written before its key is the usual cause, fixed by the next write).
			c.cert, c.certStamp, c.keyStamp = prev, cs, ks
			c.log.Error("TLS certificate not reloaded; serving the previous one", "path", c.certFile, "err", err)
		} else {
			c.log.Info("TLS certificate reloaded", "path", c.certFile)
		}
	}
	return c.cert, nil
}

// serverTLSConfig is the API's TLS config, or nil without tls_cert.
func serverTLSConfig(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cr, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cr.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if cfg.TLSClientCA != "" {
		ca := &caReloader{path: cfg.TLSClientCA, log: log}
		if err := ca.load(); err != nil {
			return nil, err
		}
		tc.ClientCAs = ca.pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		base := tc.Clone()
		tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.ClientCAs = ca.current()
			return c, nil
		}
	}
	return tc, nil
}

// caReloader holds the CA pool that client certificates are verified against, re-read when
// tls_client_ca changes (a CA bundle gaining a new CA before members move to it). A broken
// new file is logged and the previous pool stays.
type caReloader struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	pool  *x509.CertPool
	stamp fileStamp
}

// load reads the CA file; the caller holds mu or is the constructor.
func (c *caReloader) load() error {
	st, err := stamp(c.path)
	if err != nil {
		return fmt.Errorf("tls_client_ca: %w", err)
	}
	pem, err := os.ReadFile(c.path)
	if err != nil {
		return fmt.Errorf("tls_client_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("tls_client_ca %s: no PEM certificate in it", c.path)
	}
	c.pool, c.stamp = pool, st
	return nil
}

// current is the pool, re-read first if the file changed since it was loaded.
func (c *caReloader) current() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, err := stamp(c.path); err == nil && st != c.stamp {
		if err := c.load(); err != nil {
			c.stamp = st // try again when the file changes again
			c.log.Error("client CA not reloaded; verifying against the previous one", "path", c.path, "err", err)
		} else {
			c.log.Info("client CA reloaded", "path", c.path)
		}
	}
	return c.pool
}

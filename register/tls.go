package register

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSOptions say how a client verifies clbd's certificate and which certificate it shows.
type TLSOptions struct {
	// CAFile is a PEM file of the CA certificates that may sign clbd's certificate; empty
	// means the system roots (unless Pin is set).
	CAFile string
	// Pin is "sha256:<hex>", the SHA-256 of clbd's leaf certificate (DER), as printed by
	// `openssl x509 -noout -fingerprint -sha256` (colons allowed). With a pin and no CAFile,
	// the pin alone authenticates the server: self-signed certificates work.
	Pin string
	// CertFile and KeyFile are the client certificate for a clbd with tls_client_ca.
	CertFile, KeyFile string
}

// ParsePin decodes "sha256:<64 hex digits>" (colons between bytes and upper case allowed).
func ParsePin(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "sha256:")
	if !ok {
		return nil, fmt.Errorf("pin %q: want sha256:<hex of the certificate's SHA-256>", clip(s))
	}
	b, err := hex.DecodeString(strings.ReplaceAll(rest, ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("pin %q: want 64 hex digits after \"sha256:\"", clip(s))
	}
	return b, nil
}

// Fingerprint returns the pin of a certificate: "sha256:" and the hex SHA-256 of its DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Config returns the tls.Config of the options.
func (o TLSOptions) Config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.Pin != "" {
		want, err := ParsePin(o.Pin)
		if err != nil {
			return nil, err
		}
		// Without a CA the pin replaces chain verification; with one, both must hold.
		tc.InsecureSkipVerify = o.CAFile == ""
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], want) != 1 {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates,
					Err: fmt.Errorf("certificate %s does not match the pinned %s", Fingerprint(cs.PeerCertificates[0]), "sha256:"+hex.EncodeToString(want))}
			}
			return nil
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("--cert and --key: give both or neither")
	}
	if o.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// HTTPClient returns an http.Client for the options (its timeout is left to the Client).
func (o TLSOptions) HTTPClient() (*http.Client, error) {
	tc, err := o.Config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.TLSHandshakeTimeout = 10 * time.Second
	return &http.Client{Transport: tr}, nil
}

// IsLoopback reports whether host (a name or an address) stays on this machine.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// CheckTransport refuses plain http to a server that is not on this machine unless insecure
// is set: the signature protects integrity and the password, not the privacy of the request,
// and a pinned or CA-verified https server cannot be impersonated.
func CheckTransport(u *url.URL, insecure bool) error {
	if u.Scheme != "http" || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		host = u.Host
	}
	if IsLoopback(host) {
		return nil
	}
	return fmt.Errorf("refusing plain http to %s: use https (with --ca or --pin), or --insecure to send anyway", u.Host)
}

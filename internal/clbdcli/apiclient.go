package clbdcli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"clb/agent/config"
	"clb/internal/auth"
)

// The operator commands talk to the local clbd's API the way any client does: signed
// requests (internal/auth), found and authorised from the config file clbd itself reads, so
// that they work on the load balancer without flags, as root or as clb-server:
//
//   - endpoint: the config's listen address, an unspecified host (":8090", "0.0.0.0", "[::]")
//     replaced by the loopback address; https when the API serves TLS (tls_cert), verified
//     against that very certificate (the local file is the authority; no CA or host name
//     needed); --server URL overrides it (verified with --ca, else the local tls_cert, else
//     the system roots).
//   - key: --key ID; else the first admin key of keys_file; else the password file (key
//     "default", register scope: reading works, admin actions get 403 and a hint).
//
// The packages make /etc/clb/clbd.yaml world-readable and the keys and password files
// clb-server's, mode 0600: root and clb-server can read them, other users get a message
// saying so (exit 77).

// maxAnswer bounds what is read of an API answer.
const maxAnswer = 16 << 20

// apiClient signs and sends requests to one clbd.
type apiClient struct {
	base    *url.URL
	keyID   string
	key     []byte
	keyFrom string // where the key came from, for messages
	admin   bool   // the key has admin scope (known for keys file keys)
	// keysFile and pwFile are the config's, for the hints of a 403; pwExplicit is whether the
	// config names password_file (else clbd drops the generated one once keys_file is set).
	keysFile, pwFile string
	pwExplicit       bool
	http             *http.Client
}

// credential is a key to sign with.
type credential struct {
	id    string
	key   []byte
	from  string
	admin bool
}

// newAPIClient builds the client from the config clbd uses and the operator flags.
func newAPIClient(c *cli.Context) (*apiClient, error) {
	cfg, _, err := configFromCLI(c)
	if err != nil {
		return nil, cli.Exit(fmt.Sprintf("%v (the config file clbd reads: --config, default %s)", err, config.DefaultConfigPath), ExitConfig)
	}
	base, err := endpoint(cfg, str(c, "server"))
	if err != nil {
		return nil, cli.Exit(err.Error(), ExitUsage)
	}
	cred, err := findCredential(cfg, str(c, "key"))
	if err != nil {
		return nil, err
	}
	tlsConf, err := clientTLS(cfg, base, str(c, "ca"), str(c, "client-cert"), str(c, "client-key"))
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the load balancer's own API: never through a proxy
	tr.TLSClientConfig = tlsConf
	return &apiClient{
		base: base, keyID: cred.id, key: cred.key, keyFrom: cred.from, admin: cred.admin,
		keysFile: cfg.KeysFile, pwFile: config.PasswordPath(cfg), pwExplicit: cfg.PasswordFile != "",
		http: &http.Client{Transport: tr, Timeout: c.Duration("timeout")},
	}, nil
}

// endpoint is the API's URL: server when given, else the config's listen address with an
// unspecified host replaced by loopback, http or https as the API serves.
func endpoint(cfg *config.Config, server string) (*url.URL, error) {
	if server != "" {
		if !strings.Contains(server, "://") {
			scheme := "http"
			if cfg.TLSCert != "" {
				scheme = "https"
			}
			server = scheme + "://" + server
		}
		u, err := url.Parse(server)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("--server %q: want http(s)://HOST:PORT or HOST:PORT", server)
		}
		u.Path, u.RawQuery, u.Fragment = "", "", ""
		return u, nil
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %q of the config: %w", cfg.Listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	u := &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}
	if cfg.TLSCert != "" {
		u.Scheme = "https"
	}
	return u, nil
}

// findCredential picks the key to sign with (see the comment at the top of this file).
func findCredential(cfg *config.Config, want string) (credential, error) {
	pwPath := config.PasswordPath(cfg)
	fromPassword := func() (credential, error) {
		if pwPath == "" {
			return credential{}, cli.Exit(fmt.Sprintf("no credentials: keys_file %s has no admin key and the config sets no password_file; add one with: clbd keys add --scope admin ops", cfg.KeysFile), ExitNoInput)
		}
		pw, err := auth.ReadPasswordFile(pwPath)
		if err != nil {
			return credential{}, credentialError(err, pwPath, "password file")
		}
		return credential{id: auth.DefaultKeyID, key: auth.DeriveKey(pw), from: "password file " + pwPath}, nil
	}
	if want == auth.DefaultKeyID {
		return fromPassword()
	}
	if cfg.KeysFile == "" {
		if want != "" {
			return credential{}, cli.Exit(fmt.Sprintf("--key %s: the config sets no keys_file; only key %q (the password file) exists", want, auth.DefaultKeyID), ExitUsage)
		}
		return fromPassword()
	}
	data, err := os.ReadFile(cfg.KeysFile)
	if err != nil {
		return credential{}, credentialError(err, cfg.KeysFile, "keys file")
	}
	kf, err := auth.ParseKeysFile(data)
	if err != nil {
		return credential{}, cli.Exit(fmt.Sprintf("keys file %s: %v", cfg.KeysFile, err), ExitConfig)
	}
	for _, k := range kf.Keys {
		if (want == "" && k.Scope == auth.ScopeNameAdmin) || (want != "" && k.ID == want) {
			return credential{id: k.ID, key: auth.DeriveKey([]byte(k.Secret)), from: "keys file " + cfg.KeysFile, admin: k.Scope == auth.ScopeNameAdmin}, nil
		}
	}
	if want != "" {
		return credential{}, cli.Exit(fmt.Sprintf("--key %s: no such key in %s (clbd keys list)", want, cfg.KeysFile), ExitUsage)
	}
	return fromPassword()
}

func credentialError(err error, path, what string) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return cli.Exit(fmt.Sprintf("cannot read the %s %s: permission denied; run this as root or as the clb-server user (sudo -u clb-server clbd ...)", what, path), ExitNoPerm)
	case errors.Is(err, fs.ErrNotExist):
		return cli.Exit(fmt.Sprintf("no credentials: the %s %s does not exist (clbd writes STATE_DIR/password on its first start; is --config or --state-dir right?)", what, path), ExitNoInput)
	}
	return cli.Exit(fmt.Sprintf("%s %s: %v", what, path, err), ExitNoInput)
}

// clientTLS is the TLS config for an https endpoint: verified against caFile when given,
// else pinned to the certificate the local clbd serves (tls_cert), else the system roots.
// A client certificate is sent when given, and required when the API asks for one.
func clientTLS(cfg *config.Config, base *url.URL, caFile, certFile, keyFile string) (*tls.Config, error) {
	if base.Scheme != "https" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("--ca: %v", err), ExitNoInput)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, cli.Exit(fmt.Sprintf("--ca %s: no PEM certificate in it", caFile), ExitConfig)
		}
		tc.RootCAs = pool
	case cfg.TLSCert != "":
		pinned, err := readCerts(cfg.TLSCert)
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("tls_cert of the config: %v", err), ExitConfig)
		}
		// The local certificate file is the authority: the server must present exactly one
		// of its certificates as its leaf, whatever the host name (127.0.0.1 is rarely in it).
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			for _, p := range pinned {
				if bytes.Equal(p.Raw, cs.PeerCertificates[0].Raw) {
					return nil
				}
			}
			return pinError{cfg.TLSCert}
		}
	}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("--client-cert/--client-key: %v", err), ExitNoInput)
		}
		tc.Certificates = []tls.Certificate{pair}
	} else if cfg.TLSClientCA != "" {
		return nil, cli.Exit(fmt.Sprintf("the API requires client certificates (tls_client_ca %s): give --client-cert and --client-key", cfg.TLSClientCA), ExitUsage)
	}
	return tc, nil
}

// pinError is a server certificate other than the local tls_cert.
type pinError struct{ file string }

func (e pinError) Error() string {
	return fmt.Sprintf("the server's certificate is not the one in tls_cert %s (another server on that address, or the certificate was just replaced: try again; or give --ca)", e.file)
}

// readCerts reads every certificate of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return certs, nil
}

// apiError is an API refusal: {"error","code"} with its HTTP status.
type apiError struct {
	Status int
	Msg    string `json:"error"`
	Code   string `json:"code"`
}

// call sends a signed request and returns the answer's body when the status is 2xx. Any other
// answer is an error carrying the exit code (cli.ExitCoder); raw is the answer's body in
// either case (the API's JSON, for --json), nil when there was none.
func (cl *apiClient) call(ctx context.Context, method, path string, body []byte) (raw []byte, status int, err error) {
	u := *cl.base
	path, u.RawQuery, _ = strings.Cut(path, "?")
	u.RawPath = path
	u.Path, err = url.PathUnescape(path)
	if err != nil {
		return nil, 0, cli.Exit(fmt.Sprintf("path %s: %v", path, err), ExitUsage)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, 0, cli.Exit(err.Error(), ExitUsage)
	}
	if err := auth.Sign(req, cl.keyID, cl.key, body, time.Now()); err != nil {
		return nil, 0, cli.Exit(err.Error(), ExitFailure)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return nil, 0, cl.transportError(err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, resp.StatusCode, cli.Exit(fmt.Sprintf("%s %s: reading the answer: %v", method, u.Redacted(), err), ExitUnavailable)
	}
	if resp.StatusCode < 300 {
		if !json.Valid(raw) {
			return raw, resp.StatusCode, cli.Exit(fmt.Sprintf("%s %s answered %d with something that is not JSON: %q", method, u.Redacted(), resp.StatusCode, clipBytes(raw)), ExitDataErr)
		}
		return raw, resp.StatusCode, nil
	}
	ae := apiError{Status: resp.StatusCode}
	if json.Unmarshal(raw, &ae) != nil || ae.Msg == "" {
		return raw, resp.StatusCode, cli.Exit(fmt.Sprintf("%s %s: HTTP %d: %q", method, u.Redacted(), resp.StatusCode, clipBytes(raw)), exitFor(resp.StatusCode, ""))
	}
	return raw, resp.StatusCode, cli.Exit(cl.explain(ae), exitFor(ae.Status, ae.Code))
}

// transportError explains a request that got no answer.
func (cl *apiClient) transportError(err error) error {
	var cert *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var pin pinError
	switch {
	case errors.As(err, &cert), errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &pin):
		return cli.Exit(fmt.Sprintf("clbd at %s: TLS: %v", cl.base, err), ExitFailure)
	case errors.Is(err, syscall.ECONNREFUSED):
		return cli.Exit(fmt.Sprintf("cannot reach clbd at %s: connection refused: is clbd running? (systemctl status clb-server; or give --server)", cl.base), ExitUnavailable)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return cli.Exit(fmt.Sprintf("clbd at %s did not answer within --timeout (a change may still be applied: see clbd status): %v", cl.base, err), ExitUnavailable)
	}
	return cli.Exit(fmt.Sprintf("cannot reach clbd at %s: %v: is clbd running?", cl.base, err), ExitUnavailable)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// explain is the message of an API refusal, with what to do about the common ones.
func (cl *apiClient) explain(ae apiError) string {
	msg := fmt.Sprintf("%s (HTTP %d %s)", ae.Msg, ae.Status, ae.Code)
	switch ae.Status {
	case http.StatusForbidden:
		if cl.admin {
			break
		}
		msg += fmt.Sprintf("\nthe key %q from the %s has no admin scope: use an admin key", cl.keyID, cl.keyFrom)
		if cl.keysFile != "" {
			msg += fmt.Sprintf(" from the keys file: clbd keys add --scope admin ops (into %s; this command then picks it, or give --key ops)", cl.keysFile)
		} else if cl.pwExplicit {
			msg += ": set keys_file in the config, then clbd keys add --scope admin ops; this command picks it"
		} else {
			msg += fmt.Sprintf(": set keys_file in the config, and password_file: %s (with a keys file, clbd reads the generated password only when password_file names it), then clbd keys add --scope admin ops; this command picks it", cl.pwFile)
		}
	case http.StatusServiceUnavailable:
		if ae.Code == "not_applied" {
			msg += "\nthe change is saved and clbd keeps retrying it; clbd status shows the last apply's error"
		}
	case http.StatusUnauthorized:
		msg += fmt.Sprintf("\nclbd does not accept the key %q from the %s: is this the config clbd runs with (--config)?", cl.keyID, cl.keyFrom)
	}
	return msg
}

// exitFor maps an API status (and code) to an exit code.
func exitFor(status int, code string) int {
	switch {
	case status == http.StatusBadRequest:
		return ExitUsage
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ExitNoPerm
	case status == http.StatusNotFound:
		return ExitNotFound
	case status == http.StatusTooManyRequests:
		return ExitTempFail
	case status == http.StatusServiceUnavailable && code == "not_applied":
		return ExitTempFail
	case status == http.StatusServiceUnavailable, status == http.StatusBadGateway, status == http.StatusGatewayTimeout:
		return ExitUnavailable
	}
	return ExitFailure
}

func clipBytes(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

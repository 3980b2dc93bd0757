package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"clb/agent/reconcile"
	"clb/internal/testutil"
)

// domainPEM writes a self-signed certificate for host, with its key, to path (one PEM file,
// as haproxy and clb take it) and returns its serial number.
func domainPEM(t *testing.T, path, host string, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial := big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return serial.String()
}

// servedCert is the serial and common name of the certificate haproxy serves for SNI name.
func servedCert(t *testing.T, port int, name string) (string, string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", name, err)
	}
	defer c.Close()
	cert := c.ConnectionState().PeerCertificates[0]
	return cert.SerialNumber.String(), cert.Subject.CommonName
}

// TestGatewayTLS: an https gateway serves each domain's certificate by SNI from the crt-list
// clbd writes; a replaced, added or removed certificate reaches haproxy through the runtime
// API (the next handshake, no reload); a bad certificate is refused before anything is
// saved; members see X-Forwarded-Proto/-Port as ELB sets them; an http gateway's domain
// with redirect_https answers a 301 to the https gateway's port.
func TestGatewayTLS(t *testing.T) {
	f := startGateways(t, Options{})
	dir := testutil.ShortDir(t)
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(24 * time.Hour)
	serialA := domainPEM(t, filepath.Join(certs, "a.example.com.pem"), "a.example.com", far)
	serialB := domainPEM(t, filepath.Join(certs, "b.example.com.pem"), "b.example.com", far)

	// A member that shows what haproxy told it about the client's connection.
	memberPort := testutil.FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(memberPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s %s", r.Host, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Port"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.mustCall("PUT", "/v1/services/tls", `{"listeners": [{"port": 9003, "protocol": "gateway", "member_port": 9003}]}`, http.StatusOK)
	f.mustCall("PUT", "/v1/services/tls/members/m1", fmt.Sprintf(`{"address": "127.0.0.1", "port": %d}`, memberPort), http.StatusOK)

	httpsPort := testutil.FreePort(t)
	gw := func(domains string) string {
		return fmt.Sprintf(`{"bind": "127.0.0.1:%d", "protocol": "https", "certificates": %q, "domains": {%s}}`, httpsPort, certs, domains)
	}
	route := `{"routes": [{"name": "all", "service": "tls"}]}`
	f.mustCall("PUT", "/v1/gateways/secure", gw(`"a.example.com": `+route+`, "b.example.com": `+route), http.StatusOK)
	for _, c := range []struct{ sni, serial string }{{"a.example.com", serialA}, {"b.example.com", serialB}} {
		if got, _ := servedCert(t, httpsPort, c.sni); got != c.serial {
			t.Fatalf("SNI %s: served certificate %s, want %s", c.sni, got, c.serial)
		}
	}
	if _, cn := servedCert(t, httpsPort, "unknown.example.com"); cn != "clb default certificate" {
		t.Fatalf("an unknown SNI got %q, want clb's default certificate", cn)
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "a.example.com", InsecureSkipVerify: true}}}
	// Certificate changes without a reload.
	noReload := func(what string, fn func()) {
		t.Helper()
		pid, reloads := f.workerPid(), f.a.status().Reloads
		fn()
		st := f.a.status()
		if got := f.workerPid(); got != pid || st.Reloads != reloads {
			t.Errorf("%s: haproxy worker %s → %s, reloads %d → %d; want no reload", what, pid, got, reloads, st.Reloads)
		}
		if p := st.LastApply.Path; p != reconcile.PathRuntimeCerts && p != reconcile.PathRuntimeMaps {
			t.Errorf("%s: last apply path %q, want %s or %s", what, p, reconcile.PathRuntimeCerts, reconcile.PathRuntimeMaps)
		}
	}
	newA := filepath.Join(dir, "a-2027.pem")
	serialA2 := domainPEM(t, newA, "a.example.com", far)
	noReload("replace a.example.com's certificate", func() {
		f.mustCall("PUT", "/v1/gateways/secure/domains/a.example.com", fmt.Sprintf(`{"certificate": %q, "routes": [{"name": "all", "service": "tls"}]}`, newA), http.StatusOK)
	})
	if got, _ := servedCert(t, httpsPort, "a.example.com"); got != serialA2 {
		t.Fatalf("after the replacement a.example.com serves %s, want %s", got, serialA2)
	}
	serialC := domainPEM(t, filepath.Join(certs, "c.example.com.pem"), "c.example.com", far)
	noReload("add c.example.com", func() {
		f.mustCall("PUT", "/v1/gateways/secure/domains/c.example.com", route, http.StatusOK)
	})
	if got, _ := servedCert(t, httpsPort, "c.example.com"); got != serialC {
		t.Fatalf("the added c.example.com serves %s, want %s", got, serialC)
	}
	noReload("remove b.example.com", func() {
		f.mustCall("DELETE", "/v1/gateways/secure/domains/b.example.com", "", http.StatusOK)
	})
	if _, cn := servedCert(t, httpsPort, "b.example.com"); cn != "clb default certificate" {
		t.Fatalf("the removed b.example.com still serves %q", cn)
	}

	// Refused before anything is saved: a certificate for another name, an expired one, no file.
	before := f.files()
	wrong := filepath.Join(dir, "wrong.pem")
	domainPEM(t, wrong, "other.example.org", far)
	expired := filepath.Join(dir, "expired.pem")
	domainPEM(t, expired, "d.example.com", time.Now().Add(-time.Hour))
	for _, c := range []struct{ body, want string }{
		{fmt.Sprintf(`{"certificate": %q, "routes": [{"name": "all", "service": "tls"}]}`, wrong), "d.example.com"},
		{fmt.Sprintf(`{"certificate": %q, "routes": [{"name": "all", "service": "tls"}]}`, expired), "expired"},
		{route, "d.example.com.pem"},
	} {
		st, out := f.call("PUT", "/v1/gateways/secure/domains/d.example.com", c.body)
		if st != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), c.want) {
			t.Errorf("PUT d.example.com with a bad certificate: %d %v, want 400 naming %q", st, out, c.want)
		}
	}
	if after := f.files(); after != before {
		t.Errorf("a refused certificate changed the files")
	}

	// The http gateway's redirect goes to the https gateway's port.
	httpPort := testutil.FreePort(t)
	f.mustCall("PUT", "/v1/gateways/plain", fmt.Sprintf(`{"bind": "127.0.0.1:%d", "domains": {"a.example.com": {"redirect_https": true}}}`, httpPort), http.StatusOK)
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/p?q=1", httpPort), nil)
	req.Host = "a.example.com"
	noRedirect := &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != fmt.Sprintf("https://a.example.com:%d/p?q=1", httpsPort) {
		t.Fatalf("redirect: %d %q, want 301 to https://a.example.com:%d/p?q=1", resp.StatusCode, loc, httpsPort)
	}

	// The members see how the client connected.
	req, _ = http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", httpsPort), nil)
	req.Host = "a.example.com"
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("tls a.example.com https %d", httpsPort); string(body) != want {
		t.Fatalf("member saw %q, want %q", body, want)
	}
}

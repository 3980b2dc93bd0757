package haproxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"clb/internal/gateway"
	"clb/internal/haproxy"
	"clb/internal/testutil"
)

// TestGatewayTLS is the recipe of PrepareGatewayTLS with the gateway package's real
// scaffold: an https gateway compiled by gateway.Compile, its bind given the crt-list, two
// domains routed by SNI and Host to two services; a domain's certificate replaced and a new
// domain's added through the runtime API (same haproxy process), checked by CheckCerts.
func TestGatewayTLS(t *testing.T) {
	testutil.RequireHaproxy(t)
	base := testutil.ShortDir(t)
	src := filepath.Join(base, "src")
	os.Mkdir(src, 0o700)
	mapDir := filepath.Join(base, "clb-maps")
	certDir := haproxy.CertDir(filepath.Join(base, "clb-certs", "public"))
	socket := filepath.Join(base, "admin.sock")
	port := testutil.FreePort(t)

	writePEM := func(domain string) {
		os.WriteFile(filepath.Join(src, domain+".pem"), selfSigned(t, domain), 0o600)
	}
	writePEM("a.example")
	writePEM("b.example")

	svcA, svcB := echo(t, "A"), echo(t, "B")
	gws := map[string]gateway.Gateway{"public": {
		Bind: fmt.Sprintf("127.0.0.1:%d", port), Protocol: "https", Certificates: src,
		Domains: map[string]gateway.Domain{
			"a.example": {Routes: []gateway.Route{{Name: "all", Service: "sa"}}},
			"b.example": {Routes: []gateway.Route{{Name: "all", Service: "sb"}}},
		},
	}}
	targets := gateway.ServiceTargets{"sa": {80}, "sb": {80}, "sc": {80}}
	render := func(gws map[string]gateway.Gateway) []haproxy.CertChange {
		t.Helper()
		comp, err := gateway.Compile(gws, targets)
		if err != nil {
			t.Fatal(err)
		}
		own := map[string]string{}
		for d, dom := range gws["public"].Domains {
			own[d] = dom.Certificate
		}
		bind, changes, _, err := haproxy.PrepareGatewayTLS(certDir, haproxy.CertSources(src, own), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for i := range comp.Frontends {
			comp.Frontends[i].BindExtra = bind
		}
		scaffold, err := gateway.RenderScaffold(mapDir, comp)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(mapDir, 0o755)
		for _, n := range comp.MapNames() {
			os.WriteFile(gateway.MapPath(mapDir, n), comp.MapFile(n), 0o644)
		}
		cfg := fmt.Sprintf("global\n    stats socket %s mode 600 level admin\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n%s\nbackend sa_80\n    server s1 %s\nbackend sb_80\n    server s1 %s\nbackend sc_80\n    server s1 %s\n",
			socket, scaffold, svcA, svcB, svcA)
		os.WriteFile(filepath.Join(base, "haproxy.cfg"), []byte(cfg), 0o644)
		return changes
	}
	render(gws)
	out, err := exec.Command("haproxy", "-c", "-f", filepath.Join(base, "haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	cmd := exec.Command("haproxy", "-f", filepath.Join(base, "haproxy.cfg"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	get := func(sni string) (string, string) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
			}}
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("https://" + sni + "/")
		if err != nil {
			return "ERR " + err.Error(), ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		s := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), hex.EncodeToString(s[:])
	}
	fp := func(domain string) string {
		info, err := haproxy.ValidateCert(readFile(t, certDir.CertPath(domain)), domain, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return info.Fingerprint
	}
	deadline := time.Now().Add(5 * time.Second)
	for body, _ := get("a.example"); strings.HasPrefix(body, "ERR") && time.Now().Before(deadline); body, _ = get("a.example") {
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct{ sni, body string }{{"a.example", "200 A"}, {"b.example", "200 B"}} {
		if body, leaf := get(c.sni); body != c.body || leaf != fp(c.sni) {
			t.Errorf("%s: %s with %s…, want %s with its certificate %s…", c.sni, body, leaf[:min(12, len(leaf))], c.body, fp(c.sni)[:12])
		}
	}
	pid := cmd.Process.Pid

	// a.example's certificate replaced, c.example added (its route by a map change: the
	// runtime map API is gwcore's; here the files and a new domain's certificate): the bind
	// line stays, so only the certificate changes go through the runtime API.
	before := readFile(t, filepath.Join(base, "haproxy.cfg"))
	writePEM("a.example")
	writePEM("c.example")
	gws["public"].Domains["c.example"] = gateway.Domain{Routes: []gateway.Route{{Name: "all", Service: "sc"}}}
	changes := render(gws)
	if after := readFile(t, filepath.Join(base, "haproxy.cfg")); string(after) != string(before) {
		t.Fatalf("a certificate change changed haproxy.cfg:\n%s", after)
	}
	if len(changes) != 2 {
		t.Fatalf("changes %+v, want a.example replaced and c.example added", changes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := haproxy.ApplyCerts(ctx, socket, certDir.CrtList(), changes); err != nil {
		t.Fatal(err)
	}
	if err := haproxy.CheckCerts(ctx, socket, certDir); err != nil {
		t.Errorf("CheckCerts: %v", err)
	}
	if _, leaf := get("a.example"); leaf != fp("a.example") {
		t.Errorf("a.example after replace: %s…, want %s…", leaf[:12], fp("a.example")[:12])
	}
	if _, leaf := get("c.example"); leaf != fp("c.example") {
		t.Errorf("c.example after add: %s…, want %s…", leaf[:12], fp("c.example")[:12])
	}
	if cmd.Process.Pid != pid || cmd.ProcessState != nil {
		t.Error("haproxy restarted")
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func echo(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// selfSigned is a PEM (certificate and key) for domain.
func selfSigned(t *testing.T, domain string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
}

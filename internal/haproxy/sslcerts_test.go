package haproxy

import (
	"bytes"
	"clb/internal/testutil"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// certSpec describes a test certificate.
type certSpec struct {
	cn        string
	names     []string
	notBefore time.Time
	notAfter  time.Time
	rsaBits   int // 0: ECDSA P-256
	ca        bool
	parent    *issued // nil: self-signed
}

// issued is a generated certificate with its key, as PEM too.
type issued struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

func (i *issued) bundle(chain ...*issued) []byte {
	b := bytes.Clone(i.certPEM)
	for _, c := range chain {
		b = append(b, c.certPEM...)
	}
	return append(b, i.keyPEM...)
}

func (i *issued) fingerprint() string {
	s := sha256.Sum256(i.cert.Raw)
	return hex.EncodeToString(s[:])
}

func mkCert(t testing.TB, s certSpec) *issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if s.rsaBits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, s.rsaBits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.cn},
		DNSNames:     s.names,
		NotBefore:    s.notBefore, NotAfter: s.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        s.ca, BasicConstraintsValid: true,
	}
	parent, pkey := tmpl, key
	if s.parent != nil {
		parent, pkey = s.parent.cert, s.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), pkey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{
		cert: c, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

func TestValidateCert(t *testing.T) {
	now := time.Now()
	ca := mkCert(t, certSpec{cn: "test CA", ca: true})
	leaf := mkCert(t, certSpec{cn: "a.example", names: []string{"a.example", "www.a.example"}, parent: ca})
	other := mkCert(t, certSpec{cn: "b.example", names: []string{"b.example"}})
	wild := mkCert(t, certSpec{cn: "wild", names: []string{"*.w.example"}})
	expired := mkCert(t, certSpec{cn: "old", names: []string{"a.example"}, notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	future := mkCert(t, certSpec{cn: "future", names: []string{"a.example"}, notBefore: now.Add(time.Hour)})
	soon := mkCert(t, certSpec{cn: "soon", names: []string{"a.example"}, notAfter: now.Add(3 * 24 * time.Hour)})
	weak := mkCert(t, certSpec{cn: "weak", names: []string{"a.example"}, rsaBits: 1024})
	encKey := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})

	for _, tc := range []struct {
		name, domain string
		pem          []byte
		wantErr      string   // substring; "" = accepted
		wantWarn     []string // substrings, in order, of the warnings
	}{
		{name: "chain and key", domain: "a.example", pem: leaf.bundle(ca),
			wantWarn: []string{"does not verify against this machine's roots"}},
		{name: "second name", domain: "www.a.example", pem: leaf.bundle(ca), wantWarn: []string{"roots"}},
		{name: "key before the certificate", domain: "a.example", pem: append(bytes.Clone(leaf.keyPEM), leaf.certPEM...), wantWarn: []string{"roots"}},
		{name: "wildcard", domain: "x.w.example", pem: wild.bundle(), wantWarn: []string{"roots"}},
		{name: "default: no domain", pem: other.bundle(), wantWarn: []string{"roots"}},
		{name: "chain out of order", domain: "a.example", pem: append(append(bytes.Clone(leaf.certPEM), other.certPEM...), leaf.keyPEM...),
			wantWarn: []string{"roots", "certificate 1 (CN=a.example) is not signed by certificate 2 (CN=b.example)"}},
		{name: "expires soon", domain: "a.example", pem: soon.bundle(), wantWarn: []string{"roots", "expires in 72h0m"}},
		{name: "weak RSA", domain: "a.example", pem: weak.bundle(), wantWarn: []string{"roots", "RSA key has 1024 bits"}},

		{name: "name not covered", domain: "b.example", pem: leaf.bundle(ca), wantErr: "names [a.example www.a.example] do not cover b.example"},
		{name: "wildcard is one label", domain: "x.y.w.example", pem: wild.bundle(), wantErr: "do not cover x.y.w.example"},
		{name: "key of another certificate", domain: "a.example", pem: append(bytes.Clone(leaf.certPEM), other.keyPEM...), wantErr: "private key does not belong to the first certificate (CN=a.example)"},
		{name: "expired", domain: "a.example", pem: expired.bundle(), wantErr: "expired on"},
		{name: "not yet valid", domain: "a.example", pem: future.bundle(), wantErr: "not valid before"},
		{name: "no key", domain: "a.example", pem: leaf.certPEM, wantErr: "no private key"},
		{name: "two keys", domain: "a.example", pem: append(leaf.bundle(), leaf.keyPEM...), wantErr: "2 private keys"},
		{name: "no certificate", domain: "a.example", pem: leaf.keyPEM, wantErr: "no certificate"},
		{name: "not PEM", domain: "a.example", pem: []byte("hello\n"), wantErr: "not PEM"},
		{name: "empty", domain: "a.example", pem: nil, wantErr: "no certificate"},
		{name: "encrypted key", domain: "a.example", pem: append(bytes.Clone(leaf.certPEM), encKey...), wantErr: "encrypted"},
		{name: "broken certificate", domain: "a.example", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), wantErr: "certificate 1:"},
		{name: "other block", domain: "a.example", pem: append(leaf.bundle(), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}})...), wantErr: `unexpected PEM block "PUBLIC KEY"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ValidateCert(tc.pem, tc.domain, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadCert) {
					t.Fatalf("ValidateCert = %v, want ErrBadCert with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateCert: %v", err)
			}
			if len(info.Warnings) != len(tc.wantWarn) {
				t.Fatalf("warnings %q, want %d like %q", info.Warnings, len(tc.wantWarn), tc.wantWarn)
			}
			for i, w := range tc.wantWarn {
				if !strings.Contains(info.Warnings[i], w) {
					t.Errorf("warning %d = %q, want %q in it", i, info.Warnings[i], w)
				}
			}
			// The re-encoded PEM has no blank line (it ends a runtime payload) and validates again.
			if bytes.Contains(info.PEM, []byte("\n\n")) {
				t.Errorf("PEM has a blank line:\n%s", info.PEM)
			}
			if again, err := ValidateCert(info.PEM, tc.domain, now); err != nil || again.Fingerprint != info.Fingerprint {
				t.Errorf("re-encoded PEM: %v, fingerprint %s want %s", err, again.Fingerprint, info.Fingerprint)
			}
		})
	}
}

func TestCrtListRoundTrip(t *testing.T) {
	dir := CertDir("/var/lib/clb/certs/gw")
	got := string(RenderCrtList(dir, []string{"b.example", "a.example"}))
	want := "/var/lib/clb/certs/gw/default.pem\n/var/lib/clb/certs/gw/a.example.pem a.example\n/var/lib/clb/certs/gw/b.example.pem b.example\n"
	if got != want {
		t.Fatalf("RenderCrtList:\n%s\nwant\n%s", got, want)
	}
	entries, err := ParseCrtList([]byte(got + "# comment\n/x/c.pem [alpn h2,http/1.1 ] c.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantE := []CrtEntry{{Cert: "/var/lib/clb/certs/gw/default.pem"}, {"/var/lib/clb/certs/gw/a.example.pem", "a.example"}, {"/var/lib/clb/certs/gw/b.example.pem", "b.example"}, {"/x/c.pem", "c.example"}}
	if fmt.Sprint(entries) != fmt.Sprint(wantE) {
		t.Errorf("ParseCrtList = %v, want %v", entries, wantE)
	}
	if _, err := ParseCrtList([]byte("/x.pem ]oops[ a\n")); err == nil {
		t.Error("ParseCrtList accepted an unclosed [")
	}
}

func TestWriteCertDir(t *testing.T) {
	dir := CertDir(filepath.Join(t.TempDir(), "gw"))
	a := mkCert(t, certSpec{cn: "a", names: []string{"a.example"}}).bundle()
	b := mkCert(t, certSpec{cn: "b", names: []string{"b.example"}}).bundle()
	a2 := mkCert(t, certSpec{cn: "a2", names: []string{"a.example"}}).bundle()
	kinds := func(cs []CertChange) string {
		var s []string
		for _, c := range cs {
			k := "replaced"
			if c.Old == nil {
				k = "added"
			} else if c.New == nil {
				k = "removed"
			}
			s = append(s, c.Domain+" "+k)
		}
		return strings.Join(s, ", ")
	}
	steps := []struct {
		certs map[string][]byte
		want  string
	}{
		{map[string][]byte{"a.example": a, "b.example": b}, "a.example added, b.example added"},
		{map[string][]byte{"a.example": a, "b.example": b}, ""},
		{map[string][]byte{"a.example": a2, "b.example": b}, "a.example replaced"},
		{map[string][]byte{"a.example": a2}, "b.example removed"},
	}
	for i, s := range steps {
		cs, err := WriteCertDir(dir, s.certs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := kinds(cs); got != s.want {
			t.Errorf("step %d: changes %q, want %q", i, got, s.want)
		}
		for d, p := range s.certs {
			if got, _ := os.ReadFile(dir.CertPath(d)); !bytes.Equal(got, p) {
				t.Errorf("step %d: %s on disk differs", i, d)
			}
		}
	}
	if _, err := os.Stat(dir.CertPath("b.example")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed domain's file: %v, want it gone", err)
	}
	def, _ := os.ReadFile(filepath.Join(string(dir), DefaultCertName))
	if _, err := ValidateCert(def, "", time.Now()); err != nil {
		t.Errorf("default certificate: %v", err)
	}
	// The default is made once.
	if _, err := WriteCertDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	if def2, _ := os.ReadFile(filepath.Join(string(dir), DefaultCertName)); !bytes.Equal(def, def2) {
		t.Error("the default certificate was made again")
	}
}

// tlsHaproxy is a haproxy (no master-worker: the pid is the serving process) with one https
// frontend reading a crt-list, answering every request with the SNI it saw, and an admin
// socket.
type tlsHaproxy struct {
	t      *testing.T
	bin    string
	dir    CertDir
	cfg    string
	socket string
	port   int
	cmd    *exec.Cmd
}

func newTLSHaproxy(t *testing.T) *tlsHaproxy {
	h := &tlsHaproxy{t: t, bin: needHaproxy(t)}
	base := shortTempDir(t)
	h.dir = CertDir(filepath.Join(base, "certs"))
	h.cfg = filepath.Join(base, "haproxy.cfg")
	h.socket = filepath.Join(base, "admin.sock")
	h.port = freePort(t)
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend gw
    bind 127.0.0.1:%d ssl crt-list %s
    http-request return status 200 content-type text/plain lf-string "sni=%%[ssl_fc_sni]"
`, h.socket, h.port, h.dir.CrtList())
	if err := os.WriteFile(h.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *tlsHaproxy) start() {
	h.t.Helper()
	h.cmd = exec.Command(h.bin, "-f", h.cfg)
	var out testutil.SyncBuffer
	h.cmd.Stdout, h.cmd.Stderr = &out, &out
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	cmd := h.cmd
	h.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(h.t, 5*time.Second, "haproxy serves TLS", func() error {
		if cmd.ProcessState != nil {
			return fmt.Errorf("haproxy exited: %s", out.String())
		}
		_, err := h.leaf("")
		return err
	})
}

func (h *tlsHaproxy) stop() {
	h.cmd.Process.Signal(syscall.SIGTERM)
	h.cmd.Wait()
}

// leaf makes a TLS handshake with sni and returns the SHA-256 of the certificate served.
func (h *tlsHaproxy) leaf(sni string) (string, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", h.port), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(s[:]), nil
}

func (h *tlsHaproxy) wantLeaf(sni, want, what string) {
	h.t.Helper()
	got, err := h.leaf(sni)
	if err != nil {
		h.t.Fatalf("%s: handshake with SNI %q: %v", what, sni, err)
	}
	if got != want {
		h.t.Errorf("%s: SNI %q served %s…, want %s…", what, sni, got[:12], want[:12])
	}
}

func (h *tlsHaproxy) defaultFingerprint() string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(string(h.dir), DefaultCertName))
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := ValidateCert(b, "", time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.Fingerprint
}

// set validates certs and writes the directory, as the reconciler does before applying.
func (h *tlsHaproxy) set(certs map[string]*issued) []CertChange {
	h.t.Helper()
	pems := map[string][]byte{}
	for d, c := range certs {
		info, err := ValidateCert(c.bundle(), d, time.Now())
		if err != nil {
			h.t.Fatalf("ValidateCert(%s): %v", d, err)
		}
		pems[d] = info.PEM
	}
	cs, err := WriteCertDir(h.dir, pems)
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

func (h *tlsHaproxy) check() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return CheckCerts(ctx, h.socket, h.dir)
}

func (h *tlsHaproxy) apply(cs []CertChange) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ApplyCerts(ctx, h.socket, h.dir.CrtList(), cs)
}

// TestCertsRuntime runs the certificate life cycle against a real haproxy: SNI picks each
// domain's certificate, a replaced or new certificate is served by the next handshake and
// a removed one no longer, all without a reload (same process, no restart), a certificate
// haproxy refuses leaves the old one serving, and a restart from the files serves exactly
// what the runtime served.
func TestCertsRuntime(t *testing.T) {
	t.Parallel()
	h := newTLSHaproxy(t)
	a := mkCert(t, certSpec{cn: "a", names: []string{"a.example"}})
	b := mkCert(t, certSpec{cn: "b", names: []string{"b.example"}})
	h.set(map[string]*issued{"a.example": a, "b.example": b})
	h.start()
	pid := h.cmd.Process.Pid
	def := h.defaultFingerprint()
	h.wantLeaf("a.example", a.fingerprint(), "start")
	h.wantLeaf("b.example", b.fingerprint(), "start")
	h.wantLeaf("c.example", def, "start, unknown name")
	h.wantLeaf("", def, "start, no SNI")

	if err := h.check(); err != nil {
		t.Errorf("CheckCerts at start: %v", err)
	}

	// Replaced: the next handshake gets the new certificate. Between the files and the
	// runtime commands, CheckCerts sees the difference.
	a2 := mkCert(t, certSpec{cn: "a2", names: []string{"a.example"}})
	cs := h.set(map[string]*issued{"a.example": a2, "b.example": b})
	if err := h.check(); !errors.Is(err, ErrCertsDiffer) || !strings.Contains(err.Error(), "a.example: haproxy serves") {
		t.Errorf("CheckCerts before the runtime commands = %v, want ErrCertsDiffer naming a.example", err)
	}
	if err := h.apply(cs); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if err := h.check(); err != nil {
		t.Errorf("CheckCerts after replace: %v", err)
	}
	h.wantLeaf("a.example", a2.fingerprint(), "replaced")
	h.wantLeaf("b.example", b.fingerprint(), "replaced, other domain")

	// A new domain, then a removed one.
	c := mkCert(t, certSpec{cn: "c", names: []string{"c.example"}})
	if err := h.apply(h.set(map[string]*issued{"a.example": a2, "b.example": b, "c.example": c})); err != nil {
		t.Fatalf("add: %v", err)
	}
	h.wantLeaf("c.example", c.fingerprint(), "added")
	if err := h.check(); err != nil {
		t.Errorf("CheckCerts after add: %v", err)
	}
	// A domain in the files that haproxy was not told about: the crt-lists differ.
	d := mkCert(t, certSpec{cn: "d", names: []string{"d.example"}})
	dcs := h.set(map[string]*issued{"a.example": a2, "b.example": b, "c.example": c, "d.example": d})
	if err := h.check(); !errors.Is(err, ErrCertsDiffer) || !strings.Contains(err.Error(), "crt-list") {
		t.Errorf("CheckCerts with a domain not added = %v, want ErrCertsDiffer about the crt-list", err)
	}
	if err := h.apply(dcs); err != nil {
		t.Fatalf("add d: %v", err)
	}
	h.wantLeaf("d.example", d.fingerprint(), "added d")
	if err := h.apply(h.set(map[string]*issued{"a.example": a2, "c.example": c})); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := h.check(); err != nil {
		t.Errorf("CheckCerts after remove: %v", err)
	}
	h.wantLeaf("d.example", h.defaultFingerprint(), "removed d")
	h.wantLeaf("b.example", def, "removed")
	h.wantLeaf("c.example", c.fingerprint(), "removed, other domain")

	// A certificate haproxy refuses (its key is another's: ValidateCert would have
	// stopped it, here it is sent anyway): the old one keeps serving, the transaction is
	// aborted, so the next change goes through.
	bad := append(bytes.Clone(a.certPEM), b.keyPEM...)
	err := h.apply([]CertChange{{Domain: "a.example", Path: h.dir.CertPath("a.example"), Old: []byte{}, New: bad}})
	if !errors.Is(err, ErrCertNeedsReload) || !strings.Contains(err.Error(), "inconsistencies between private key and certificate") {
		t.Errorf("mismatched key: %v, want ErrCertNeedsReload with haproxy's reason", err)
	}
	h.wantLeaf("a.example", a2.fingerprint(), "after a refused key")
	err = h.apply([]CertChange{{Domain: "a.example", Path: h.dir.CertPath("a.example"), Old: []byte{}, New: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}})
	if !errors.Is(err, ErrCertNeedsReload) || !strings.Contains(err.Error(), "unable to load certificate") {
		t.Errorf("garbage PEM: %v, want ErrCertNeedsReload with haproxy's reason", err)
	}
	h.wantLeaf("a.example", a2.fingerprint(), "after a refused PEM")
	// Too long for the CLI: refused before anything is sent.
	long := append(bytes.Repeat(a.certPEM, 30), a.keyPEM...)
	if err := h.apply([]CertChange{{Domain: "a.example", Path: h.dir.CertPath("a.example"), Old: []byte{}, New: long}}); !errors.Is(err, ErrCertNeedsReload) || !strings.Contains(err.Error(), "over the") {
		t.Errorf("long PEM: %v, want ErrCertNeedsReload, over the limit", err)
	}
	a3 := mkCert(t, certSpec{cn: "a3", names: []string{"a.example"}})
	if err := h.apply(h.set(map[string]*issued{"a.example": a3, "c.example": c})); err != nil {
		t.Fatalf("replace after refusals: %v", err)
	}
	h.wantLeaf("a.example", a3.fingerprint(), "replaced after refusals")

	if h.cmd.Process.Pid != pid || h.cmd.ProcessState != nil {
		t.Fatalf("haproxy %d is not the process that started (%d): a restart happened", h.cmd.Process.Pid, pid)
	}
	// The files are what the runtime serves: a fresh haproxy from them serves the same.
	h.stop()
	h.start()
	h.wantLeaf("a.example", a3.fingerprint(), "restarted from the files")
	h.wantLeaf("b.example", def, "restarted from the files")
	h.wantLeaf("c.example", c.fingerprint(), "restarted from the files")
	if err := h.check(); err != nil {
		t.Errorf("CheckCerts after the restart: %v", err)
	}
}

func TestLoadCerts(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(t.TempDir(), "own.pem")
	a := mkCert(t, certSpec{cn: "a", names: []string{"a.example"}})
	b := mkCert(t, certSpec{cn: "b", names: []string{"b.example"}})
	os.WriteFile(filepath.Join(dir, "a.example.pem"), a.bundle(), 0o600)
	os.WriteFile(own, b.bundle(), 0o600)
	src := CertSources(dir, map[string]string{"a.example": "", "b.example": own})
	if want := map[string]string{"a.example": filepath.Join(dir, "a.example.pem"), "b.example": own}; fmt.Sprint(src) != fmt.Sprint(want) {
		t.Fatalf("CertSources = %v, want %v", src, want)
	}
	pems, warns, err := LoadCerts(src, time.Now())
	if err != nil || len(pems) != 2 || len(warns) != 2 || !strings.HasPrefix(warns[0], "a.example: the chain does not verify") {
		t.Fatalf("LoadCerts = %d PEMs, %q, %v", len(pems), warns, err)
	}
	// A domain whose file is another's certificate, or missing: refused, naming both.
	src["c.example"] = own
	if _, _, err := LoadCerts(src, time.Now()); err == nil || !strings.Contains(err.Error(), "certificate of c.example ("+own+")") || !strings.Contains(err.Error(), "do not cover c.example") {
		t.Errorf("LoadCerts(wrong names) = %v", err)
	}
	src["c.example"] = filepath.Join(dir, "c.example.pem")
	if _, _, err := LoadCerts(src, time.Now()); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "certificate of c.example") {
		t.Errorf("LoadCerts(missing) = %v", err)
	}
}

func TestPrepareGatewayTLS(t *testing.T) {
	src := t.TempDir()
	dir := CertDir(filepath.Join(t.TempDir(), "gw"))
	a := mkCert(t, certSpec{cn: "a", names: []string{"a.example"}})
	os.WriteFile(filepath.Join(src, "a.example.pem"), a.bundle(), 0o600)
	bind, cs, warns, err := PrepareGatewayTLS(dir, CertSources(src, map[string]string{"a.example": ""}), time.Now())
	if err != nil || bind != "ssl crt-list "+dir.CrtList() || len(cs) != 1 || cs[0].Old != nil || len(warns) != 1 {
		t.Fatalf("PrepareGatewayTLS = %q, %d changes, %q, %v", bind, len(cs), warns, err)
	}
	// A refused certificate writes nothing.
	os.WriteFile(filepath.Join(src, "b.example.pem"), a.bundle(), 0o600)
	before, _ := os.ReadFile(dir.CrtList())
	if _, _, _, err := PrepareGatewayTLS(dir, CertSources(src, map[string]string{"a.example": "", "b.example": ""}), time.Now()); !errors.Is(err, ErrBadCert) {
		t.Fatalf("PrepareGatewayTLS(b with a's certificate) = %v, want ErrBadCert", err)
	}
	if after, _ := os.ReadFile(dir.CrtList()); !bytes.Equal(before, after) {
		t.Errorf("crt-list changed after a refusal:\n%s", after)
	}
}

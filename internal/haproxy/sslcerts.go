package haproxy

// TLS per domain on an https gateway: certificates chosen by SNI from a crt-list, and
// certificates added, replaced or removed through the runtime API without a reload.
//
// What haproxy 2.6.12 does, measured here (admin socket, `bind ... ssl crt-list FILE`):
//   - `new ssl cert P` + `set ssl cert P <<PEM` + `commit ssl cert P`, then
//     `add ssl crt-list L <<"P [opts] SNI"` serves a new domain's certificate from the next
//     handshake; `set` + `commit` on a loaded P replaces it, same pid.
//   - `set ssl cert` with a key that does not match the certificate is accepted ("Transaction
//     created"); only `commit` refuses it ("inconsistencies between private key and
//     certificate"), and the transaction stays open until `abort ssl cert P`. A payload that
//     is not a PEM fails at `set` and opens no transaction.
//   - A payload over about 16 KiB (tune.bufsize) gets an empty answer and does nothing
//     (19 KB: nothing; 14 KB: accepted). Longer PEMs go through a reload instead.
//   - `del ssl crt-list L P` then `del ssl cert P` removes a domain; the crt-list's first line
//     is the bind's default certificate and cannot be deleted ("used as default certificate").
//     So clb's crt-list starts with a certificate of its own (DefaultCertName), never removed.
//   - The runtime API writes no file: the files are written first, so that a reload loads
//     what the runtime already serves.

import (
	"bytes"
	"clb/internal/atomicfile"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrCertNeedsReload marks a certificate change the runtime API could not make (a command
// failed, a payload too long for the CLI): the files are right, a reload applies them.
var ErrCertNeedsReload = errors.New("certificate change needs a reload")

// ErrBadCert is wrapped by every refusal of ValidateCert.
var ErrBadCert = errors.New("bad certificate")

// CertExpiryWarning is how close to its end a certificate is when ValidateCert warns.
const CertExpiryWarning = 14 * 24 * time.Hour

// CertInfo describes a certificate ValidateCert accepted.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Names       []string  `json:"names"` // DNS names and IP addresses of the leaf
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256"` // of the leaf, hex
	// PEM is the certificate chain (leaf first, as given) and the key, re-encoded: no text
	// outside the blocks, no blank line (a blank line ends a runtime API payload).
	PEM []byte `json:"-"`
	// Warnings are what does not stop haproxy serving it but should be looked at.
	Warnings []string `json:"warnings,omitempty"`
}

// ValidateCert checks a PEM bundle (certificates, leaf first, and one unencrypted private
// key, in any order) for domain before anything is written: refused (ErrBadCert) when it
// has no certificate or no key, more than one key, a key that does not belong to the leaf,
// a leaf that is expired or not yet valid, or a leaf whose names do not cover domain
// (wildcards count); warned when the chain does not verify against the system's roots
// (a private CA, a missing intermediate, a self-signed certificate), when it expires within
// CertExpiryWarning, or when an RSA key is shorter than 2048 bits. An empty domain skips
// the name check (the default certificate).
func ValidateCert(data []byte, domain string, now time.Time) (CertInfo, error) {
	var info CertInfo
	var certs []*x509.Certificate
	var certBlocks, keyBlocks []*pem.Block
	var key crypto.PrivateKey
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return info, fmt.Errorf("%w: certificate %d: %v", ErrBadCert, len(certs)+1, err)
			}
			certs = append(certs, c)
			certBlocks = append(certBlocks, &pem.Block{Type: b.Type, Bytes: b.Bytes})
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "":
			return info, fmt.Errorf("%w: the private key is encrypted; haproxy needs it in clear", ErrBadCert)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			k, err := parseKey(b)
			if err != nil {
				return info, fmt.Errorf("%w: private key: %v", ErrBadCert, err)
			}
			key = k
			keyBlocks = append(keyBlocks, &pem.Block{Type: b.Type, Bytes: b.Bytes})
		case b.Type == "DH PARAMETERS" || b.Type == "EC PARAMETERS":
			// haproxy reads these from the same file; not needed, dropped
		default:
			return info, fmt.Errorf("%w: unexpected PEM block %q", ErrBadCert, b.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 && len(certs)+len(keyBlocks) == 0 {
		return info, fmt.Errorf("%w: not PEM (no -----BEGIN block)", ErrBadCert)
	}
	if len(certs) == 0 {
		return info, fmt.Errorf("%w: no certificate in the PEM", ErrBadCert)
	}
	if len(keyBlocks) == 0 {
		return info, fmt.Errorf("%w: no private key in the PEM (certificate and key go in one file)", ErrBadCert)
	}
	if len(keyBlocks) > 1 {
		return info, fmt.Errorf("%w: %d private keys in the PEM, want one", ErrBadCert, len(keyBlocks))
	}
	leaf := certs[0]
	signer, ok := key.(crypto.Signer)
	if !ok || !publicKeyEqual(signer.Public(), leaf.PublicKey) {
		return info, fmt.Errorf("%w: the private key does not belong to the first certificate (%s)", ErrBadCert, leaf.Subject)
	}
	if now.After(leaf.NotAfter) {
		return info, fmt.Errorf("%w: the certificate (%s) expired on %s", ErrBadCert, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return info, fmt.Errorf("%w: the certificate (%s) is not valid before %s", ErrBadCert, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	info.Names = append(info.Names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, ip.String())
	}
	if domain != "" {
		if err := leaf.VerifyHostname(domain); err != nil {
			return info, fmt.Errorf("%w: the certificate's names %v do not cover %s", ErrBadCert, info.Names, domain)
		}
	}
	info.Subject = leaf.Subject.String()
	info.NotAfter = leaf.NotAfter
	sum := sha256.Sum256(leaf.Raw)
	info.Fingerprint = hex.EncodeToString(sum[:])

	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		info.Warnings = append(info.Warnings, fmt.Sprintf("the chain does not verify against this machine's roots (%v): clients that do not trust its issuer will refuse it", err))
	}
	for i := 1; i < len(certs); i++ {
		if certs[i-1].CheckSignatureFrom(certs[i]) != nil {
			info.Warnings = append(info.Warnings, fmt.Sprintf("certificate %d (%s) is not signed by certificate %d (%s): the chain is out of order or has a gap", i, certs[i-1].Subject, i+1, certs[i].Subject))
		}
	}
	if left := leaf.NotAfter.Sub(now); left < CertExpiryWarning {
		info.Warnings = append(info.Warnings, fmt.Sprintf("the certificate expires in %s (%s)", left.Round(time.Minute), leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		info.Warnings = append(info.Warnings, fmt.Sprintf("the RSA key has %d bits; use at least 2048", k.N.BitLen()))
	}
	var out bytes.Buffer
	for _, b := range append(certBlocks, keyBlocks...) {
		pem.Encode(&out, b)
	}
	info.PEM = out.Bytes()
	return info, nil
}

func parseKey(b *pem.Block) (crypto.PrivateKey, error) {
	switch b.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	return nil, fmt.Errorf("unknown key type %q", b.Type)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// CrtListName is the crt-list file of a gateway's certificate directory; DefaultCertName
// the certificate on its first line: the bind's default, served to clients that send no
// SNI or a name no domain has. It is a self-signed certificate clb makes once
// (EnsureDefaultCert), since haproxy refuses to delete the default at runtime and a
// domain's certificate in that place would pin the domain.
const (
	CrtListName     = "crt-list.txt"
	DefaultCertName = "default.pem"
)

// CrtEntry is one line of a crt-list: a certificate file served for one SNI name.
type CrtEntry struct {
	Cert string // absolute path
	SNI  string // empty on the default line
}

// CertDir is the certificate directory of one https gateway, beside haproxy.cfg: clb's
// copies of each domain's PEM (DOMAIN.pem, validated and re-encoded), the default
// certificate and the crt-list naming them. haproxy reads only these copies, so an
// operator's file edited in place changes nothing until clb has validated it.
type CertDir string

// CrtList is the crt-list path, for `bind ... ssl crt-list PATH`.
func (d CertDir) CrtList() string { return filepath.Join(string(d), CrtListName) }

// CertPath is the file of domain's certificate.
func (d CertDir) CertPath(domain string) string { return filepath.Join(string(d), domain+".pem") }

// RenderCrtList is the crt-list of dir serving certs (domain → PEM): the default first,
// then one line per domain in name order, SNI filter = the domain.
func RenderCrtList(dir CertDir, domains []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n", filepath.Join(string(dir), DefaultCertName))
	sorted := slices.Clone(domains)
	slices.Sort(sorted)
	for _, d := range sorted {
		fmt.Fprintf(&b, "%s %s\n", dir.CertPath(d), d)
	}
	return b.Bytes()
}

// ParseCrtList reads a crt-list back (the lines RenderCrtList writes: a path and an
// optional SNI filter; options in brackets are skipped).
func ParseCrtList(data []byte) ([]CrtEntry, error) {
	var out []CrtEntry
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if o := strings.IndexByte(line, '['); o >= 0 {
			c := strings.IndexByte(line, ']')
			if c < o {
				return nil, fmt.Errorf("crt-list line %d: unclosed [", i+1)
			}
			line = line[:o] + line[c+1:]
		}
		f := strings.Fields(line)
		e := CrtEntry{Cert: f[0]}
		if len(f) > 1 {
			e.SNI = f[1]
		}
		out = append(out, e)
	}
	return out, nil
}

// CertChange is one domain whose certificate changes: added (Old nil), replaced (both) or
// removed (New nil). PEMs are as CertInfo.PEM.
type CertChange struct {
	Domain   string
	Path     string
	Old, New []byte
}

// WriteCertDir makes dir hold exactly certs (domain → PEM as ValidateCert returned it),
// the default certificate and the crt-list, and returns what changed against what was
// there: files first, so that a reload serves what the runtime API is then told. Unchanged
// files are not rewritten; removed domains' files are deleted.
func WriteCertDir(dir CertDir, certs map[string][]byte) ([]CertChange, error) {
	if err := os.MkdirAll(string(dir), 0o700); err != nil {
		return nil, fmt.Errorf("certificate dir: %w", err)
	}
	if err := EnsureDefaultCert(dir); err != nil {
		return nil, err
	}
	old := map[string][]byte{}
	if data, err := os.ReadFile(dir.CrtList()); err == nil {
		entries, err := ParseCrtList(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir.CrtList(), err)
		}
		for _, e := range entries {
			if e.SNI == "" {
				continue
			}
			b, err := os.ReadFile(e.Cert)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			old[e.SNI] = b
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var changes []CertChange
	var domains []string
	for d, p := range certs {
		domains = append(domains, d)
		if o, ok := old[d]; ok && bytes.Equal(o, p) {
			continue
		}
		c := CertChange{Domain: d, Path: dir.CertPath(d), New: p}
		if o, ok := old[d]; ok {
			c.Old = o
			if c.Old == nil {
				c.Old = []byte{}
			}
		}
		if err := atomicfile.Write(c.Path, p, 0o600); err != nil {
			return nil, fmt.Errorf("certificate of %s: %w", d, err)
		}
		changes = append(changes, c)
	}
	for d, o := range old {
		if _, ok := certs[d]; !ok {
			if o == nil {
				o = []byte{}
			}
			changes = append(changes, CertChange{Domain: d, Path: dir.CertPath(d), Old: o})
		}
	}
	if err := atomicfile.Write(dir.CrtList(), RenderCrtList(dir, domains), 0o600); err != nil {
		return nil, fmt.Errorf("crt-list: %w", err)
	}
	for _, c := range changes {
		if c.New == nil {
			if err := os.Remove(c.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
	}
	slices.SortFunc(changes, func(a, b CertChange) int { return strings.Compare(a.Domain, b.Domain) })
	return changes, nil
}

// EnsureDefaultCert writes dir's default certificate (self-signed, CN "clb default
// certificate", ten years) unless a valid one is there.
func EnsureDefaultCert(dir CertDir) error {
	p := filepath.Join(string(dir), DefaultCertName)
	if b, err := os.ReadFile(p); err == nil {
		if _, err := ValidateCert(b, "", time.Now()); err == nil {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "clb default certificate"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return atomicfile.Write(p, b.Bytes(), 0o600)
}

// maxCertPayload bounds a `set ssl cert` command with its payload: haproxy 2.6 silently
// drops a payload over its 16 KiB buffer.
const maxCertPayload = 15 << 10

// ApplyCerts makes the haproxy behind the admin socket serve changes (from WriteCertDir)
// for the crt-list crtList without a reload: new domains by `new ssl cert`, `set ssl cert`,
// `commit ssl cert` and `add ssl crt-list`; replaced ones by `set` and `commit`; removed
// ones by `del ssl crt-list` and `del ssl cert`. On the first failure the open transaction
// is aborted (`abort ssl cert`) and the error wraps ErrCertNeedsReload: the files are
// already right, so the caller reloads. Changes applied before the failure stay (they match
// the files).
func ApplyCerts(ctx context.Context, socket, crtList string, changes []CertChange) error {
	for _, c := range changes {
		if err := applyCert(ctx, socket, crtList, c); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCertNeedsReload, c.Domain, err)
		}
	}
	return nil
}

func applyCert(ctx context.Context, socket, crtList string, c CertChange) error {
	if c.New == nil {
		if err := sslCmd(ctx, socket, "del ssl crt-list "+crtList+" "+c.Path, nil, "deleted in crtlist"); err != nil {
			return err
		}
		return sslCmd(ctx, socket, "del ssl cert "+c.Path, nil, "deleted!")
	}
	if strings.ContainsAny(c.Path, " \t\n;") {
		return fmt.Errorf("certificate path %q has a space or ';'", c.Path)
	}
	if len(c.New)+len(c.Path)+32 > maxCertPayload {
		return fmt.Errorf("PEM of %d bytes: over the %d bytes haproxy 2.6 takes through its CLI", len(c.New), maxCertPayload)
	}
	if c.Old == nil {
		if err := sslCmd(ctx, socket, "new ssl cert "+c.Path, nil, "New empty certificate store"); err != nil {
			return err
		}
	}
	if err := sslCmd(ctx, socket, "set ssl cert "+c.Path, c.New, "Transaction created", "Transaction updated"); err != nil {
		abortCert(ctx, socket, c.Path)
		return err
	}
	if err := sslCmd(ctx, socket, "commit ssl cert "+c.Path, nil, "Success!"); err != nil {
		abortCert(ctx, socket, c.Path)
		return err
	}
	if c.Old == nil {
		return sslCmd(ctx, socket, "add ssl crt-list "+crtList, []byte(c.Path+" "+c.Domain+"\n"), "Success!")
	}
	return nil
}

func abortCert(ctx context.Context, socket, path string) {
	sslCmd(ctx, socket, "abort ssl cert "+path, nil, "Transaction aborted", "No ongoing transaction")
}

// sslCmd runs one admin-socket command, with a payload (`cmd <<` then its lines, ended
// by an empty line) when payload is not nil, and succeeds when the answer contains one of
// ok: haproxy's SSL commands answer in words, not severity codes.
func sslCmd(ctx context.Context, socket, cmd string, payload []byte, ok ...string) error {
	ans, err := adminRaw(ctx, socket, cmd, payload)
	if err != nil {
		return err
	}
	for _, o := range ok {
		if strings.Contains(ans, o) {
			return nil
		}
	}
	if ans == "" {
		ans = "empty answer (payload too long?)"
	}
	return fmt.Errorf("%s: %s", cmd, firstLines(ans, 3))
}

// adminRaw sends one command (and payload) on its own admin-socket connection
// (AdminCommand) and returns the answer, trimmed.
func adminRaw(ctx context.Context, socket, cmd string, payload []byte) (string, error) {
	var lines []string
	if payload != nil {
		lines = strings.Split(strings.TrimRight(string(payload), "\n"), "\n")
	}
	out, err := AdminCommand(ctx, socket, cmd, lines...)
	return strings.TrimSpace(out), err
}

// ErrCertsDiffer is wrapped by CheckCerts when haproxy does not serve what the files say.
var ErrCertsDiffer = errors.New("haproxy's certificates differ from the files")

// CheckCerts compares what the haproxy behind socket serves for dir's crt-list with the
// files: the same lines (certificate and SNI filter), and each domain's loaded certificate
// the one in its file (SHA-1 fingerprints, as `show ssl cert` prints them). A difference
// (clbd stopped between writing the files and the runtime commands, or someone used the
// CLI) wraps ErrCertsDiffer: a reload makes haproxy load the files. Run it after a restart
// of clbd and after reloads, like the map check.
func CheckCerts(ctx context.Context, socket string, dir CertDir) error {
	data, err := os.ReadFile(dir.CrtList())
	if err != nil {
		return err
	}
	want, err := ParseCrtList(data)
	if err != nil {
		return err
	}
	out, err := adminRaw(ctx, socket, "show ssl crt-list "+dir.CrtList(), nil)
	if err != nil {
		return err
	}
	got, err := ParseCrtList([]byte(out))
	if err != nil {
		return fmt.Errorf("show ssl crt-list: %w", err)
	}
	if len(got) == 0 {
		return fmt.Errorf("%w: haproxy has no crt-list %s (%s)", ErrCertsDiffer, dir.CrtList(), firstLines(out, 1))
	}
	key := func(es []CrtEntry) []string {
		var k []string
		for _, e := range es {
			k = append(k, e.Cert+" "+e.SNI)
		}
		slices.Sort(k)
		return k
	}
	if !slices.Equal(key(got), key(want)) {
		return fmt.Errorf("%w: crt-list %s: haproxy has %q, the file %q", ErrCertsDiffer, dir.CrtList(), key(got), key(want))
	}
	for _, e := range want {
		if e.SNI == "" {
			continue
		}
		b, err := os.ReadFile(e.Cert)
		if err != nil {
			return err
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return fmt.Errorf("%s: no certificate first", e.Cert)
		}
		sum := sha1.Sum(blk.Bytes)
		out, err := adminRaw(ctx, socket, "show ssl cert "+e.Cert, nil)
		if err != nil {
			return err
		}
		var loaded string
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "SHA1 FingerPrint: "); ok {
				loaded = strings.TrimSpace(v)
			}
		}
		if !strings.EqualFold(loaded, hex.EncodeToString(sum[:])) {
			return fmt.Errorf("%w: %s: haproxy serves %q, the file holds %X", ErrCertsDiffer, e.SNI, loaded, sum)
		}
	}
	return nil
}

func firstLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, " / ")
}

// CertSources says where each domain's PEM of an https gateway is read from: the domain's
// own file (own[domain], Domain.Certificate) when it names one, else DIR/DOMAIN.pem in the
// gateway's certificate directory dir (Gateway.Certificates).
func CertSources(dir string, own map[string]string) map[string]string {
	out := make(map[string]string, len(own))
	for d, p := range own {
		if p == "" {
			p = filepath.Join(dir, d+".pem")
		}
		out[d] = p
	}
	return out
}

// LoadCerts reads and validates (ValidateCert) each domain's PEM from sources (domain →
// file) and returns them re-encoded, for WriteCertDir, with the warnings prefixed by their
// domain. The first file that cannot be read or is refused is an error naming the domain
// and the file: nothing should be written then, and haproxy keeps what it serves.
func LoadCerts(sources map[string]string, now time.Time) (map[string][]byte, []string, error) {
	pems := make(map[string][]byte, len(sources))
	var warns []string
	for _, d := range slices.Sorted(maps.Keys(sources)) {
		b, err := os.ReadFile(sources[d])
		if err != nil {
			return nil, nil, fmt.Errorf("certificate of %s: %w", d, err)
		}
		info, err := ValidateCert(b, d, now)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate of %s (%s): %w", d, sources[d], err)
		}
		for _, w := range info.Warnings {
			warns = append(warns, d+": "+w)
		}
		pems[d] = info.PEM
	}
	return pems, warns, nil
}

// PrepareGatewayTLS is what the reconciler does for one https gateway before it renders:
// read and validate each domain's certificate (sources from CertSources), write dir
// (WriteCertDir), and return the bind's TLS arguments ("ssl crt-list DIR/crt-list.txt",
// gateway.Frontend.BindExtra), the changes for ApplyCerts, and the validation's warnings. A
// refused certificate is an error and nothing is written: haproxy keeps serving what it has.
//
// Then: when haproxy.cfg is unchanged (a certificate added, replaced or removed changes only
// the files of dir, never the bind line), ApplyCerts with the changes, and a reload when it
// fails (ErrCertNeedsReload); when haproxy.cfg changed, the reload loads the files. After a
// reload and once after clbd starts, CheckCerts, and a reload when it finds a difference.
func PrepareGatewayTLS(dir CertDir, sources map[string]string, now time.Time) (bindExtra string, changes []CertChange, warnings []string, err error) {
	pems, warns, err := LoadCerts(sources, now)
	if err != nil {
		return "", nil, nil, err
	}
	changes, err = WriteCertDir(dir, pems)
	if err != nil {
		return "", nil, nil, err
	}
	return "ssl crt-list " + dir.CrtList(), changes, warns, nil
}

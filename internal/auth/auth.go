// Package auth implements clb's request-signing scheme, shared by the member-side client and
// clbd: the password never crosses the wire, only an HMAC over the method, path, query,
// timestamp, nonce and body digest, and the verifier refuses stale, future and replayed
// requests. The scheme is specified in docs/CONTRACTS.md.
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/crypto/hkdf"
)

// Scheme is the Authorization scheme name, also the first line of the string to sign.
const Scheme = "CLB1-HMAC-SHA256"

// HeaderContentSHA256 carries the lowercase hex SHA-256 of the request body.
const HeaderContentSHA256 = "X-Clb-Content-Sha256"

// KeySize is the length in bytes of a signing key returned by DeriveKey.
const KeySize = 32

// DefaultKeyID is the id of the key derived from the 2010 shared password.
const DefaultKeyID = "default"

const (
	hkdfSalt       = "clb/v1"
	hkdfInfo       = "clb request signing"
	nonceBytes     = 16
	maxKeyIDLen    = 64
	maxHeaderLen   = 512
	maxPasswordLen = 64 << 10
)

// DeriveKey turns a password into the 32-byte signing key: HKDF-SHA256 with the salt "clb/v1"
// and the info "clb request signing". Client and server derive the same key from the same
// password, so the password itself is never sent.
func DeriveKey(password []byte) []byte {
	key := make([]byte, KeySize)
	r := hkdf.New(sha256.New, password, []byte(hkdfSalt), []byte(hkdfInfo))
	if _, err := io.ReadFull(r, key); err != nil {
		// HKDF-SHA256 can produce up to 255*32 bytes; 32 never fails.
		panic("auth: hkdf: " + err.Error())
	}
	return key
}

// ReadPasswordFile reads a password file and returns its content with surrounding whitespace
// trimmed, so a trailing newline written by an editor or `echo` is not part of the password.
// An empty file is an error.
func ReadPasswordFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordLen+1))
	if err != nil {
		return nil, fmt.Errorf("read password file %s: %w", path, err)
	}
	if len(b) > maxPasswordLen {
		return nil, fmt.Errorf("read password file %s: larger than %d bytes", path, maxPasswordLen)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("read password file %s: file is empty", path)
	}
	return b, nil
}

// ValidateKeyID accepts 1-64 characters of A-Z a-z 0-9 . _ -: a key id travels inside the
// Authorization header, so it may not contain separators or spaces.
func ValidateKeyID(id string) error {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return fmt.Errorf("key id %q: want 1-%d of A-Z a-z 0-9 . _ -", clip(id), maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("key id %q: want 1-%d of A-Z a-z 0-9 . _ -", clip(id), maxKeyIDLen)
		}
	}
	return nil
}

// Sign sets the X-Clb-Content-Sha256 and Authorization headers of req for body, which must be
// exactly the bytes sent as the request body (nil for none). Each call draws a fresh random
// nonce, so a request that is retried must be signed again. Sign does not set req.Body.
func Sign(req *http.Request, keyID string, key []byte, body []byte, now time.Time) error {
	var n [nonceBytes]byte
	if _, err := rand.Read(n[:]); err != nil {
		return fmt.Errorf("sign request: nonce: %w", err)
	}
	return sign(req, keyID, key, body, now, hex.EncodeToString(n[:]))
}

// sign is Sign with a given nonce, for deterministic tests.
func sign(req *http.Request, keyID string, key []byte, body []byte, now time.Time, nonce string) error {
	if req == nil || req.URL == nil {
		return errors.New("sign request: no request URL")
	}
	if err := ValidateKeyID(keyID); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	if len(key) == 0 {
		return errors.New("sign request: empty key")
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := signature(key, keyID, ts, nonce, method, req.URL.EscapedPath(), req.URL.RawQuery, bodyHash)
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(HeaderContentSHA256, bodyHash)
	req.Header.Set("Authorization", Scheme+" key="+keyID+", ts="+ts+", nonce="+nonce+", sig="+hex.EncodeToString(mac))
	return nil
}

// signature returns HMAC-SHA256(key, stringToSign) as raw bytes.
func signature(key []byte, keyID, ts, nonce, method, path, query, bodyHash string) []byte {
	m := hmac.New(sha256.New, key)
	for i, s := range []string{Scheme, keyID, ts, nonce, method, path, query, bodyHash} {
		if i > 0 {
			io.WriteString(m, "\n")
		}
		io.WriteString(m, s)
	}
	return m.Sum(nil)
}

// clip keeps error details short and printable whatever the input was.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}

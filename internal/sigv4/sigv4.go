// Package sigv4 verifies AWS Signature Version 4 on requests from AWS's own clients (botocore
// and the AWS CLI, boto 2, libcloud), for clbd's AWS Query endpoint. The access key id is a
// clb key id and the secret access key is that key's secret.
//
// What it accepts is what those clients send, verified against each of them (see the tests):
// the Authorization header form only (no presigned query), the region and service of the
// credential scope as the client wrote them (boto 2 signs "0/127" against 127.0.0.1), a
// query canonicalised after form-decoding ('+' is a space: libcloud sends '+' and signs
// "%20"), the signed headers in the order the client lists them, and X-Amz-Date within a
// clock window. SigV4 has no nonce: a Verifier remembers the signatures it accepted for twice
// the window and refuses a repeat, so a captured request cannot be replayed (the clients
// re-sign every retry).
package sigv4

import (
	"clb/internal/replay"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// DefaultSkew is the clock window: AWS allows 15 minutes, clb's own scheme 5.
const DefaultSkew = 5 * time.Minute

// Error codes, as AWS answers them (all with status 403).
const (
	CodeMissingToken   = "MissingAuthenticationToken"
	CodeIncomplete     = "IncompleteSignature"
	CodeInvalidKey     = "InvalidClientTokenId"
	CodeSignatureWrong = "SignatureDoesNotMatch"
)

// Error is a refused signature with AWS's error code. Msg is safe to send to the client.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func fail(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Credential is who signed an accepted request, and the scope they signed for.
type Credential struct {
	KeyID   string
	Date    string // YYYYMMDD
	Region  string
	Service string
}

// Secrets finds the secret of an access key id.
type Secrets func(keyID string) (secret []byte, ok bool)

// Verifier checks signatures. It is safe for concurrent use.
type Verifier struct {
	secrets Secrets
	skew    time.Duration
	now     func() time.Time
	max     int

	seen *replay.Cache
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithSkew sets the clock window (default DefaultSkew).
func WithSkew(d time.Duration) Option { return func(v *Verifier) { v.skew = d } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithMaxRemembered bounds the accepted signatures remembered against replays (default
// 100,000, about 10 MB). When full, requests are refused until the oldest expire: a flood of
// valid requests cannot make clbd forget a signature early.
func WithMaxRemembered(n int) Option { return func(v *Verifier) { v.max = n } }

// New returns a Verifier over secrets.
func New(secrets Secrets, opts ...Option) *Verifier {
	v := &Verifier{secrets: secrets, skew: DefaultSkew, now: time.Now, max: 100_000}
	for _, o := range opts {
		o(v)
	}
	v.seen = replay.New(v.max)
	return v
}

// Verify checks the signature of r, whose body (already read) is body. On success it returns
// the credential; else an *Error.
func (v *Verifier) Verify(r *http.Request, body []byte) (Credential, error) {
	return v.verify(r, body, true)
}

// VerifyRepeatable is Verify for a read-only request, which may be sent twice with the same
// signature: it neither refuses nor records a repeat. The clients sign with a one-second
// clock, so an identical request repeated within a second (boto 2 polling
// DescribeInstanceHealth) has the same signature; replaying a read changes nothing.
func (v *Verifier) VerifyRepeatable(r *http.Request, body []byte) (Credential, error) {
	return v.verify(r, body, false)
}

func (v *Verifier) verify(r *http.Request, body []byte, once bool) (Credential, error) {
	if r.URL.Query().Has("X-Amz-Algorithm") || r.URL.Query().Has("X-Amz-Signature") {
		return Credential{}, fail(CodeIncomplete, "presigned requests are not accepted; sign with the Authorization header")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Credential{}, fail(CodeMissingToken, "Request is missing Authentication Token")
	}
	a, err := parseAuthorization(h)
	if err != nil {
		return Credential{}, err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	at, perr := time.Parse("20060102T150405Z", amzDate)
	if perr != nil {
		return Credential{}, fail(CodeIncomplete, "X-Amz-Date header missing or not YYYYMMDDTHHMMSSZ")
	}
	if amzDate[:8] != a.cred.Date {
		return Credential{}, fail(CodeSignatureWrong, "Credential date %s does not match X-Amz-Date %s", a.cred.Date, amzDate)
	}
	now := v.now()
	if d := now.Sub(at); d > v.skew || d < -v.skew {
		return Credential{}, fail(CodeSignatureWrong, "Signature expired: %s is now earlier than %s (%s - %s)", amzDate,
			now.UTC().Add(-v.skew).Format("20060102T150405Z"), now.UTC().Format("20060102T150405Z"), v.skew)
	}
	secret, ok := v.secrets(a.cred.KeyID)
	if !ok || len(secret) == 0 {
		return Credential{}, fail(CodeInvalidKey, "The security token included in the request is invalid.")
	}
	creq, err := canonicalRequest(r, body, a.signed)
	if err != nil {
		return Credential{}, err
	}
	scope := a.cred.Date + "/" + a.cred.Region + "/" + a.cred.Service + "/aws4_request"
	sum := sha256.Sum256([]byte(creq))
	sts := Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	want := hmacSHA256(signingKey(secret, a.cred), []byte(sts))
	got, herr := hex.DecodeString(a.signature)
	if herr != nil || !hmac.Equal(got, want) {
		return Credential{}, fail(CodeSignatureWrong, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	if !once {
		return a.cred, nil
	}
	if err := v.remember(a.signature, at.Add(v.skew), now); err != nil {
		return Credential{}, err
	}
	return a.cred, nil
}

// Sign signs r (with body) as the AWS clients do, for clients of clbd's own and tests: the
// host, x-amz-date and, when present, content-type headers.
func Sign(r *http.Request, body []byte, keyID string, secret []byte, region, service string, now time.Time) {
	amzDate := now.UTC().Format("20060102T150405Z")
	r.Header.Set("X-Amz-Date", amzDate)
	signed := []string{"host", "x-amz-date"}
	if r.Header.Get("Content-Type") != "" {
		signed = []string{"content-type", "host", "x-amz-date"}
	}
	cred := Credential{KeyID: keyID, Date: amzDate[:8], Region: region, Service: service}
	creq, _ := canonicalRequest(r, body, signed)
	sum := sha256.Sum256([]byte(creq))
	scope := cred.Date + "/" + region + "/" + service + "/aws4_request"
	sts := Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	sig := hex.EncodeToString(hmacSHA256(signingKey(secret, cred), []byte(sts)))
	r.Header.Set("Authorization", Algorithm+" Credential="+keyID+"/"+scope+", SignedHeaders="+strings.Join(signed, ";")+", Signature="+sig)
}

type authorization struct {
	cred      Credential
	signed    []string
	signature string
}

// parseAuthorization reads "AWS4-HMAC-SHA256 Credential=K/D/R/S/aws4_request,
// SignedHeaders=a;b, Signature=HEX" (commas with or without spaces).
func parseAuthorization(h string) (authorization, error) {
	var a authorization
	if len(h) > 4096 {
		return a, fail(CodeIncomplete, "Authorization header too long")
	}
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != Algorithm {
		return a, fail(CodeIncomplete, "Authorization header: want algorithm %s", Algorithm)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, fail(CodeIncomplete, "Authorization header: %q is not NAME=VALUE", part)
		}
		if _, dup := fields[k]; dup {
			return a, fail(CodeIncomplete, "Authorization header: %s given twice", k)
		}
		fields[k] = val
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signed == "" || sig == "" {
		return a, fail(CodeIncomplete, "Authorization header requires Credential, SignedHeaders and Signature")
	}
	c := strings.Split(cred, "/")
	if len(c) != 5 || c[4] != "aws4_request" || c[0] == "" || len(c[1]) != 8 {
		return a, fail(CodeIncomplete, "Credential should be scoped to a valid region: KEY/YYYYMMDD/REGION/SERVICE/aws4_request")
	}
	a.cred = Credential{KeyID: c[0], Date: c[1], Region: c[2], Service: c[3]}
	a.signed = strings.Split(signed, ";")
	hasHost := false
	for _, name := range a.signed {
		if name == "" || name != strings.ToLower(name) {
			return a, fail(CodeIncomplete, "SignedHeaders: want lower-case names separated by ';'")
		}
		hasHost = hasHost || name == "host"
	}
	if !hasHost {
		return a, fail(CodeIncomplete, "SignedHeaders must include host")
	}
	a.signature = sig
	return a, nil
}

// canonicalRequest builds SigV4's canonical request of r for the signed headers.
func canonicalRequest(r *http.Request, body []byte, signed []string) (string, error) {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(r.URL.EscapedPath()))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		var val string
		if name == "host" {
			val = r.Host
		} else {
			vals, ok := r.Header[http.CanonicalHeaderKey(name)]
			if !ok {
				return "", fail(CodeSignatureWrong, "signed header %s is not in the request", name)
			}
			val = strings.Join(vals, ",")
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(strings.Join(strings.Fields(val), " "))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	if p := r.Header.Get("X-Amz-Content-Sha256"); p == "UNSIGNED-PAYLOAD" {
		b.WriteString(p)
	} else {
		sum := sha256.Sum256(body)
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String(), nil
}

// canonicalURI decodes each path segment once and encodes it again with SigV4's unreserved set.
func canonicalURI(p string) string {
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			s = d
		}
		segs[i] = encode(s)
	}
	return strings.Join(segs, "/")
}

// canonicalQuery form-decodes each name and value ('+' = space), encodes them with the
// unreserved set, and sorts the pairs by name, then value.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type pair struct{ k, v string }
	var pairs []pair
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if d, err := url.QueryUnescape(k); err == nil {
			k = d
		}
		if d, err := url.QueryUnescape(v); err == nil {
			v = d
		}
		pairs = append(pairs, pair{encode(k), encode(v)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// encode percent-encodes every byte outside A-Z a-z 0-9 - _ . ~ (upper-case hex).
func encode(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func signingKey(secret []byte, c Credential) []byte {
	k := hmacSHA256(append([]byte("AWS4"), secret...), []byte(c.Date))
	k = hmacSHA256(k, []byte(c.Region))
	k = hmacSHA256(k, []byte(c.Service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// ErrTooMany is the cause of a refusal when the replay memory is full.
var ErrTooMany = errors.New("too many signed requests in the clock window")

// remember records an accepted signature until it could no longer be accepted (its
// X-Amz-Date plus the window) and refuses one already seen.
func (v *Verifier) remember(sig string, until, now time.Time) error {
	switch err := v.seen.Add(sig, until, now); {
	case errors.Is(err, replay.ErrReplayed):
		return fail(CodeSignatureWrong, "replayed request: this signature was already used; sign every request anew")
	case err != nil:
		return fail(CodeSignatureWrong, "%v; retry in a moment", ErrTooMany)
	}
	return nil
}

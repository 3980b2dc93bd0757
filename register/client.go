// Package register is the member side of clb: a client library that registers and
// unregisters a member of a load-balanced service with clbd over the signed HTTP API, and the
// command-line programs clb_register and clb_unregister built on it (see App and Main).
//
// A call succeeds only once the server reports the change applied; it retries with
// exponential backoff and jitter, within a total timeout, on network errors, rate limiting,
// server errors (500, 502-504) and unavailable or not-yet-applied answers, and signs every
// attempt afresh.
package register

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"clb/internal/auth"
	"clb/internal/model"
)

// Defaults of a Client.
const (
	DefaultTimeout  = 60 * time.Second
	DefaultRetryMin = 250 * time.Millisecond
	DefaultRetryMax = 5 * time.Second
)

const maxResponseBytes = 1 << 20

// Client registers and unregisters members with one clbd. The zero value is not usable: set
// at least Server and Key. A Client is safe for concurrent use once set up.
type Client struct {
	// Server is CLB_SERVER: a host, host:port or URL, as accepted by ParseServer, or several
	// of them comma-separated (load balancers sharing one membership; see multi.go).
	Server string
	// KeyID names the key; empty means auth.DefaultKeyID ("default", the shared password).
	KeyID string
	// Key is the signing key, auth.DeriveKey(password).
	Key []byte
	// HTTPClient sends the requests; nil means a client without its own timeout (the total
	// Timeout bounds every call). Set its Transport to configure TLS.
	HTTPClient *http.Client
	// Timeout bounds a whole call, retries included; zero means DefaultTimeout.
	Timeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts; zero means DefaultRetryMin
	// and DefaultRetryMax. A server's Retry-After is honoured even when longer.
	RetryMin, RetryMax time.Duration
	// Logger receives a line per retry; nil discards them.
	Logger *slog.Logger

	// sleep waits between attempts; tests replace it to record the waits.
	sleep func(ctx context.Context, d time.Duration) error
}

// Request describes the member to register or unregister. Every field is optional: the
// server uses the source address of the request, the service's member port, weight 100 and
// the name address:port.
type Request struct {
	Name    string
	Address string
	Port    int
	// Weight is 0-256; nil leaves the server's default. 0 takes the member out of rotation.
	Weight *int
	Zone   string
	// TTL, when positive, makes the registration a lease that clbd removes unless it is
	// renewed within TTL (see Keepalive); Unregister ignores it.
	TTL time.Duration
	// CPU is the machine's CPU use in percent, for Auto Scaling's CPUUtilization (Keepalive
	// sends it with every renewal); nil sends none.
	CPU *float64
}

// Result is the server's answer to a successful call.
type Result struct {
	Service string
	// Member is the member as the server recorded it, with defaults filled in.
	Member model.Member
	// Applied is true when haproxy routes (or stopped routing) according to the change; a
	// call returns a nil error only when it is.
	Applied bool
	// Attempts is the number of requests sent.
	Attempts int
}

// memberBody is the JSON body of register and unregister requests.
type memberBody struct {
	Name    string   `json:"name,omitempty"`
	Address string   `json:"address,omitempty"`
	Port    int      `json:"port,omitempty"`
	Weight  *int     `json:"weight,omitempty"`
	Zone    string   `json:"zone,omitempty"`
	TTL     string   `json:"ttl,omitempty"`
	CPU     *float64 `json:"cpu,omitempty"`
}

// answer is the JSON body of the server's answers, successful or not.
type answer struct {
	Service string        `json:"service"`
	Member  *model.Member `json:"member"`
	Applied *bool         `json:"applied"`
	Error   string        `json:"error"`
	Code    string        `json:"code"`
}

// Register adds or updates the member in service: PUT .../members/{name} when req names the
// member, POST .../members otherwise. It returns once the change is applied, or an *Error.
func (c *Client) Register(ctx context.Context, service string, req Request) (Result, error) {
	if err := validate(service, req, true); err != nil {
		return Result{}, err
	}
	b := memberBody{Address: req.Address, Port: req.Port, Weight: req.Weight, Zone: req.Zone, CPU: req.CPU}
	if req.TTL > 0 {
		b.TTL = req.TTL.String()
	}
	method, path := http.MethodPost, "/v1/services/"+service+"/members"
	if req.Name != "" {
		method, path = http.MethodPut, path+"/"+req.Name
	}
	body, err := json.Marshal(b)
	if err != nil {
		return Result{}, fmt.Errorf("register: %w", err)
	}
	return c.call(ctx, false, method, path, body, service, req)
}

// AnnounceInstance tells clbd's instance registry that this machine is instance id, at
// address (empty: the source address clbd sees) in zone: PUT /v1/instances/{id}. The AWS ELB
// API then registers it by id. It returns once saved, or an *Error.
func (c *Client) AnnounceInstance(ctx context.Context, id, address, zone string) error {
	if err := model.ValidateMemberName(id); err != nil {
		return usageErrorf("instance id: %v", err)
	}
	if err := model.ValidateZone(zone); err != nil {
		return usageErrorf("%v", err)
	}
	body, err := json.Marshal(map[string]string{"address": address, "zone": zone})
	if err != nil {
		return fmt.Errorf("announce instance: %w", err)
	}
	_, err = c.call(ctx, false, http.MethodPut, "/v1/instances/"+id, body, "", Request{})
	return err
}

// Unregister removes the member from service: DELETE .../members/{name} when req names the
// member, otherwise DELETE .../members with the address and port (the server's defaults
// when empty: the caller itself). It returns once the change is applied, or an *Error.
func (c *Client) Unregister(ctx context.Context, service string, req Request) (Result, error) {
	if err := validate(service, req, false); err != nil {
		return Result{}, err
	}
	path := "/v1/services/" + service + "/members"
	var body []byte
	if req.Name != "" {
		path += "/" + req.Name
	} else {
		var err error
		if body, err = json.Marshal(memberBody{Address: req.Address, Port: req.Port}); err != nil {
			return Result{}, fmt.Errorf("unregister: %w", err)
		}
	}
	return c.call(ctx, true, http.MethodDelete, path, body, service, req)
}

// validate checks locally what the server would refuse, so a typo is a usage error.
func validate(service string, req Request, register bool) error {
	check := []error{model.ValidateServiceName(service)}
	if req.Name != "" {
		check = append(check, model.ValidateMemberName(req.Name))
	}
	if req.Address != "" {
		check = append(check, model.ValidateAddress(req.Address))
	}
	if req.Port != 0 {
		check = append(check, model.ValidatePort(req.Port))
	}
	if register {
		if req.Weight != nil {
			check = append(check, model.ValidateWeight(*req.Weight))
		}
		check = append(check, model.ValidateZone(req.Zone), validateTTL(req.TTL))
	}
	for _, err := range check {
		if err != nil {
			return &Error{Kind: KindUsage, Message: err.Error(), Err: err}
		}
	}
	return nil
}

// outcome is the classified result of one attempt.
type outcome struct {
	res   Result
	err   *Error
	retry bool
	wait  time.Duration // the server's Retry-After
}

// call sends the request until it is applied, refused, or the timeout is spent.
func (c *Client) call(ctx context.Context, unregister bool, method, path string, body []byte, service string, req Request) (Result, error) {
	targets, err := c.targets(ctx, path)
	if err != nil {
		return Result{}, &Error{Kind: KindUsage, Message: err.Error(), Err: err}
	}
	u := *targets[0].url
	keyID := c.KeyID
	if keyID == "" {
		keyID = auth.DefaultKeyID
	}
	if err := auth.ValidateKeyID(keyID); err != nil {
		return Result{}, &Error{Kind: KindUsage, Message: err.Error(), Err: err}
	}
	if len(c.Key) == 0 {
		return Result{}, usageErrorf("no signing key")
	}
	timeout := orDefault(c.Timeout, DefaultTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	var (
		last     *Error
		accepted *Error // the last not_applied answer: the server stored the change
		// maybeRemoved: an earlier attempt may have reached clbd (not_applied, or no answer).
		maybeRemoved bool
		res          Result
		attempts     int
	)
	for {
		attempts++
		r := c.attemptAll(ctx, targets, method, keyID, body)
		o := r.o
		u.Host = r.host
		if r.accepted != nil {
			accepted, res = r.accepted.err, r.accepted.res
		}
		maybeRemoved = maybeRemoved || r.maybe
		if o.err == nil {
			o.res.Attempts = attempts
			if o.res.Service == "" {
				o.res.Service = service
			}
			if o.res.Member.Name == "" && o.res.Member.Address == "" {
				o.res.Member = model.Member{Name: req.Name, Address: req.Address, Port: req.Port}
			}
			return o.res, nil
		}
		if ctx.Err() != nil && last != nil {
			// The attempt was cut short by the deadline; the previous answer says more.
			break
		}
		last = o.err
		if o.err.Kind == KindNotApplied {
			accepted, res = o.err, o.res
		}
		if unregister && maybeRemoved && o.err.Status == http.StatusNotFound {
			// An earlier attempt (answered 503 not_applied, or lost on the way back) removed
			// the member. clbd answers 404 only once haproxy runs a config without the
			// member, so the unregistration is applied.
			res.Applied, res.Attempts = true, attempts
			if res.Service == "" {
				res.Service = service
			}
			if res.Member.Name == "" {
				res.Member = model.Member{Name: req.Name, Address: req.Address, Port: req.Port}
			}
			return res, nil
		}
		if o.err.Kind == KindNotApplied || o.err.Kind == KindUnreachable {
			maybeRemoved = true
		}
		if !o.retry || ctx.Err() != nil {
			break
		}
		deadline, _ := ctx.Deadline()
		left := time.Until(deadline)
		if o.wait > 0 && o.wait >= left {
			log.Info("giving up: the server asks to retry after the timeout", "addr", u.Host, "retry_after", o.wait, "err", o.err)
			break
		}
		d := max(c.backoff(attempts), o.wait)
		if d >= left {
			if left < orDefault(c.RetryMin, DefaultRetryMin) {
				break
			}
			d = left / 2 // a last attempt in the time left
		}
		log.Info("retrying", "addr", u.Host, "attempt", attempts, "wait", d.Round(time.Millisecond), "err", o.err)
		if err := c.sleepFor(ctx, d); err != nil {
			break
		}
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) && accepted == nil {
		// Cancelled by the caller (a signal, say), not by the timeout.
		return res, fmt.Errorf("%s %s: %w", method, u.Path, ctx.Err())
	}
	if accepted != nil && (last.Kind == KindUnreachable || last.Kind == KindNotApplied) {
		// The change is stored; the last failure only means it could not be confirmed.
		last = accepted
	}
	if last.Kind == KindUnreachable && last.Status == 0 && errors.Is(last.Err, context.DeadlineExceeded) {
		last.Message = fmt.Sprintf("no answer from %s within %v", u.Host, timeout)
	}
	last.Attempts = attempts
	return res, last
}

// attemptWith sends one signed request with hc and classifies the answer.
func (c *Client) attemptWith(ctx context.Context, hc *http.Client, method string, u *url.URL, keyID string, body []byte) (o outcome) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return outcome{err: &Error{Kind: KindUsage, Message: err.Error(), Err: err}}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "clb-client/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := auth.Sign(req, keyID, c.Key, body, time.Now()); err != nil {
		return outcome{err: &Error{Kind: KindUsage, Message: err.Error(), Err: err}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		e := &Error{Kind: KindUnreachable, Err: err, Message: err.Error()}
		return outcome{err: e, retry: !permanent(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		e := &Error{Kind: KindUnreachable, Status: resp.StatusCode, Err: err, Message: "read answer: " + err.Error()}
		return outcome{err: e, retry: true}
	}
	var a answer
	jsonErr := json.Unmarshal(raw, &a)
	if a.Member != nil {
		o.res.Member = *a.Member
	}
	o.res.Service = a.Service
	e := &Error{Status: resp.StatusCode, Code: a.Code, Message: a.Error}
	if e.Message == "" && jsonErr != nil {
		e.Message = firstLine(raw)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusAccepted:
		// Stored but not waited for; asking again would not tell more.
		e.Kind = KindNotApplied
		if e.Message == "" {
			e.Message = "the server did not wait for the change to be applied"
		}
		o.err = e
	case s >= 200 && s < 300:
		switch {
		case jsonErr != nil || a.Applied == nil:
			// Exit 0 promises an applied change: only clbd's own answer says so.
			e.Kind, o.err = KindRefused, e
			e.Message = "unexpected answer, not from clbd? " + e.Message
		case !*a.Applied:
			e.Kind, o.err, o.retry = KindNotApplied, e, true
			if e.Message == "" {
				e.Message = "the server answered without applying the change"
			}
		default:
			o.res.Applied = true
		}
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		e.Kind, o.err = KindAuth, e
	case s == http.StatusServiceUnavailable && a.Code == "not_applied":
		e.Kind, o.err, o.retry = KindNotApplied, e, true
	case s == http.StatusTooManyRequests || s == http.StatusInternalServerError ||
		s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout:
		// A 500 is clbd failing for now (its state file could not be written, say: nothing
		// was kept, retrying is safe) or a proxy's; 501 and 505 would fail again.
		e.Kind, o.err, o.retry = KindUnreachable, e, true
	default:
		e.Kind, o.err = KindRefused, e
	}
	if o.err != nil {
		o.wait = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return o
}

// permanent reports network errors that retrying cannot fix: the server's certificate is not
// trusted, or the server does not speak TLS.
func permanent(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	return errors.As(err, &cv) || errors.As(err, &rh)
}

// backoff returns the wait before attempt+1: exponential from RetryMin up to RetryMax, with
// "equal jitter" (half fixed, half random) so members restarted together spread out.
func (c *Client) backoff(attempt int) time.Duration {
	lo, hi := orDefault(c.RetryMin, DefaultRetryMin), orDefault(c.RetryMax, DefaultRetryMax)
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

func (c *Client) sleepFor(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date. Zero if absent or
// invalid.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// firstLine returns the start of a non-JSON answer (a proxy's error page, say) for messages.
func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return clip(s)
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

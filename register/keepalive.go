package register

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"clb/internal/model"
	"clb/internal/sdnotify"
)

// Lease bounds the client accepts for --ttl. clbd enforces its own minimum (lease_min_ttl,
// 5s by default) and answers 400 below it.
const (
	MinTTL = time.Second
	MaxTTL = 24 * time.Hour
)

// RenewInterval is how often Keepalive renews a lease of ttl: a third of it, so that a lease
// survives a failed renewal, or a restart of clbd, and is still renewed in time.
func RenewInterval(ttl time.Duration) time.Duration { return (ttl / 3).Round(time.Millisecond) }

func validateTTL(ttl time.Duration) error {
	if ttl != 0 && (ttl < MinTTL || ttl > MaxTTL) {
		return fmt.Errorf("%w: ttl %s: want %s-%s", model.ErrInvalid, ttl, MinTTL, MaxTTL)
	}
	return nil
}

// Keepalive registers req as a lease of req.TTL, renews it every RenewInterval until ctx ends,
// then unregisters it. It is what `clb_register --ttl D --keepalive` runs, under systemd
// (Type=notify) or upstart.
//
//   - The first registration is retried within the client's Timeout like any Register; its
//     failure is returned at once (a service manager restarts the job).
//   - Once the member is registered and applied, it calls ready (if not nil) and tells systemd
//     READY=1 (sd_notify(3), when $NOTIFY_SOCKET is set); STATUS= lines follow the renewals,
//     STOPPING=1 the end.
//   - Renewals name the member and its address and port as clbd recorded them, so that every
//     renewal is the same idempotent PUT: clbd restarts and outages never duplicate a member.
//     A failed renewal is retried with backoff; if the outage outlasts the TTL, clbd has
//     dropped the member and the next successful renewal registers it again.
//   - When ctx ends (SIGTERM, SIGINT) it unregisters, within the client's Timeout; a member
//     clbd no longer knows (its lease expired) counts as unregistered.
//
// It returns the first registration's result and the error of the first registration or of
// the final unregistration.
func (c *Client) Keepalive(ctx context.Context, service string, req Request, ready func(Result)) (Result, error) {
	if req.TTL <= 0 {
		return Result{}, usageErrorf("keepalive needs a lease: a positive TTL")
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	notify := func(state string) {
		if _, err := sdnotify.Notify(state); err != nil {
			log.Warn("notify systemd", "err", err)
		}
	}
	res, err := c.Register(ctx, service, req)
	pinned := pin(req, res)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped while registering: an attempt may have reached clbd.
			c.leave(service, pinned, log)
		}
		return res, err
	}
	every := RenewInterval(req.TTL)
	if ready != nil {
		ready(res)
	}
	notify(fmt.Sprintf("READY=1\nSTATUS=registered %s in %s; renewing the %s lease every %s", pinned.Name, service, req.TTL, every))
	log.Info("registered; renewing the lease", "service", service, "member", pinned.Name, "ttl", req.TTL, "every", every)

	renew := *c
	renew.Timeout = every // one renewal, retries included, never overlaps the next
	fails := 0
	wait := every
	// Every renewal carries the machine's CPU use since the previous one (/proc/stat).
	cpu, cpuOK := newCPUMeter(), true
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		if ctx.Err() != nil {
			notify("STOPPING=1\nSTATUS=unregistering")
			return res, c.leave(service, pinned, log)
		}
		sent := pinned
		if cpuOK {
			if pct, ok := cpu.percent(); ok {
				sent.CPU = &pct
			}
		}
		_, err := renew.Register(ctx, service, sent)
		var e *Error
		if sent.CPU != nil && errors.As(err, &e) && e.Kind == KindRefused && strings.Contains(e.Error(), `"cpu"`) {
			// A clbd older than Auto Scaling refuses the field: renew without it from now on.
			log.Info("clbd does not take CPU reports; renewing without them", "service", service)
			cpuOK = false
			_, err = renew.Register(ctx, service, pinned)
		}
		switch {
		case err == nil || (errors.As(err, &e) && e.Kind == KindNotApplied):
			// Not applied still means stored: the lease is renewed.
			if fails > 0 {
				log.Info("lease renewed again", "service", service, "member", pinned.Name, "failed_renewals", fails)
				notify(fmt.Sprintf("STATUS=registered %s in %s; renewing the %s lease every %s", pinned.Name, service, req.TTL, every))
			}
			fails, wait = 0, every
		case ctx.Err() != nil:
			continue
		default:
			fails++
			wait = min(every, c.backoff(fails))
			log.Warn("lease renewal failed; retrying", "service", service, "member", pinned.Name, "failed_renewals", fails, "wait", wait.Round(time.Millisecond), "err", err)
			notify(fmt.Sprintf("STATUS=lease renewal failing (%d in a row): %v", fails, err))
		}
		t.Reset(wait)
	}
}

// pin fixes the member's identity after the first registration: the name, address and port
// clbd recorded (the defaults it filled in), so renewals update that member and no other.
func pin(req Request, res Result) Request {
	if res.Member.Name != "" {
		req.Name = res.Member.Name
	}
	if req.Address == "" && res.Member.Address != "" {
		req.Address = res.Member.Address
	}
	if req.Port == 0 && res.Member.Port != 0 {
		req.Port = res.Member.Port
	}
	return req
}

// leave unregisters the member with a fresh context (ctx has ended), treating "not registered"
// as done: the lease may have expired, or the registration never reached clbd.
func (c *Client) leave(service string, req Request, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), orDefault(c.Timeout, DefaultTimeout))
	defer cancel()
	_, err := c.Unregister(ctx, service, req)
	var e *Error
	if errors.As(err, &e) && e.Kind == KindRefused && e.Status == http.StatusNotFound {
		log.Info("member was not registered any more", "service", service, "member", req.Name)
		return nil
	}
	return err
}

// keepalive is clb_register --keepalive: it prints the registration when it is applied, and
// the unregistration at the end.
func keepalive(c *cli.Context, client *Client, inv invocation) error {
	res, err := client.Keepalive(c.Context, inv.service, inv.req, func(res Result) {
		fmt.Fprintf(c.App.Writer, "%s; renewing the %s lease every %s until SIGTERM\n", describe(res, false), inv.req.TTL, RenewInterval(inv.req.TTL))
	})
	if err != nil {
		return err
	}
	res.Member = model.Member{Name: pin(inv.req, res).Name, Address: res.Member.Address, Port: res.Member.Port}
	fmt.Fprintln(c.App.Writer, describe(res, true))
	return nil
}

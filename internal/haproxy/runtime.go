package haproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/haproxytech/client-native/v5/runtime"
	"github.com/haproxytech/client-native/v5/runtime/options"
)

// RuntimeClient is the part of client-native's runtime API (over haproxy's admin socket) that
// clbd uses. Tests wrap it to make a command fail.
type RuntimeClient interface {
	AddServer(backend, name, attributes string) error
	DeleteServer(backend, name string) error
	SetServerState(backend, server, state string) error
	SetServerWeight(backend, server, weight string) error
	SetServerAddr(backend, server, ip string, port int) error
	EnableServerHealth(backend, server string) error
	ExecuteRaw(command string) ([]string, error)
}

// DialRuntime connects client-native to an admin socket. client-native caches the haproxy
// version per process and refuses add/del server until it knows it, so ask for it first.
func DialRuntime(ctx context.Context, socket string) (RuntimeClient, error) {
	rt, err := runtime.New(ctx, options.Socket(socket))
	if err != nil {
		return nil, fmt.Errorf("runtime API %s: %w", socket, err)
	}
	if _, err := rt.GetVersion(); err != nil {
		return nil, fmt.Errorf("runtime API %s: show info: %w", socket, err)
	}
	return rt, nil
}

// errStillUsed is how `del server` says the server still carries connections.
func errStillUsed(err error) bool {
	return err != nil && (errors.Is(err, errSlotInUse) || strings.Contains(err.Error(), "still has connections"))
}

func errNoSuchServer(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "No such server") || strings.Contains(err.Error(), "No such backend"))
}

// Drain is a server taken out of rotation (state maint) and waiting for its connections to end
// before `del server`.
type Drain struct {
	Backend, Name string
	// Member is the member that leaves (the server's name, or the member a slot held).
	Member string
	// Slot: a static server that stays (disabled) once drained: it is drained when no
	// connection to it is left, instead of by `del server`.
	Slot     bool
	Deadline time.Time // then its sessions are shut down
	Forced   bool      // sessions were shut down
	ForcedAt time.Time // when
}

// Key is BACKEND/SERVER, as haproxy's commands name a server.
func (d Drain) Key() string { return d.Backend + "/" + d.Name }

// ApplyServers applies server changes through the runtime API. A removed server goes to maint
// at once (no new requests) and is deleted when its connections end: those are returned as
// drains. Any failure stops at once; the caller falls back to a reload, which makes haproxy
// match the file whatever was applied before the failure.
func ApplyServers(rt RuntimeClient, changes []ServerChange, defaults map[string][]string, drainFor func(backend string) time.Duration) ([]Drain, error) {
	var drains []Drain
	now := time.Now()
	for _, c := range changes {
		switch {
		case c.New == nil: // removed
			if err := rt.SetServerState(c.Backend, c.Old.Name, "maint"); err != nil {
				if errNoSuchServer(err) {
					continue
				}
				return drains, fmt.Errorf("drain %s/%s: %w", c.Backend, c.Old.Name, err)
			}
			err := rt.DeleteServer(c.Backend, c.Old.Name)
			switch {
			case err == nil || errNoSuchServer(err):
			case errStillUsed(err):
				drains = append(drains, Drain{Backend: c.Backend, Name: c.Old.Name, Member: c.Old.Name, Deadline: now.Add(drainFor(c.Backend))})
			default:
				return drains, fmt.Errorf("del server %s/%s: %w", c.Backend, c.Old.Name, err)
			}
		case c.Old == nil: // added
			if err := addServer(rt, c.Backend, *c.New, defaults[c.Backend]); err != nil {
				return drains, err
			}
		default:
			if w, ok := c.WeightOnly(); ok {
				if err := rt.SetServerWeight(c.Backend, c.New.Name, w); err != nil {
					return drains, fmt.Errorf("set weight %s/%s: %w", c.Backend, c.New.Name, err)
				}
				continue
			}
			sc, ok := c.slotChange()
			if !ok {
				// Options changed: not worth a runtime dance; a reload is exact.
				return drains, fmt.Errorf("server %s/%s changed more than its address, weight or state", c.Backend, c.New.Name)
			}
			if sc.leave {
				if err := rt.SetServerState(c.Backend, c.Old.Name, "maint"); err != nil {
					return drains, fmt.Errorf("drain %s/%s: %w", c.Backend, c.Old.Name, err)
				}
				drains = append(drains, Drain{Backend: c.Backend, Name: c.Old.Name, Member: c.Old.Comment, Slot: true, Deadline: now.Add(drainFor(c.Backend))})
				continue
			}
			if err := fillSlot(rt, c.Backend, *c.New, sc, defaults[c.Backend]); err != nil {
				return drains, err
			}
		}
	}
	return drains, nil
}

// fillSlot points a static server at a member: address, weight, then (from disabled) health
// checks and the server itself. The address must be an IP address (`set server addr` takes no
// host name): a member registered by name takes the reload path.
func fillSlot(rt RuntimeClient, backend string, s Server, sc slotChange, defaults []string) error {
	if sc.addr != "" {
		host, port, err := splitHostPort(sc.addr)
		if err != nil {
			return fmt.Errorf("set server %s/%s addr: %w", backend, s.Name, err)
		}
		if err := rt.SetServerAddr(backend, s.Name, host, port); err != nil {
			return fmt.Errorf("set server %s/%s addr: %w", backend, s.Name, err)
		}
	}
	if sc.weight != "" {
		if err := rt.SetServerWeight(backend, s.Name, sc.weight); err != nil {
			return fmt.Errorf("set weight %s/%s: %w", backend, s.Name, err)
		}
	}
	if !sc.enable {
		return nil
	}
	if HasCheck(s, defaults) {
		if err := rt.EnableServerHealth(backend, s.Name); err != nil {
			return fmt.Errorf("enable health %s/%s: %w", backend, s.Name, err)
		}
	}
	if err := rt.SetServerState(backend, s.Name, "ready"); err != nil {
		return fmt.Errorf("enable server %s/%s: %w", backend, s.Name, err)
	}
	return nil
}

// splitHostPort splits ADDR:PORT or [IPv6]:PORT; the address must be an IP address.
func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", 0, fmt.Errorf("%q is not an IP address", host)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}

// addServer creates a dynamic server. haproxy 2.6 creates it in maintenance; health checks and
// the server are then enabled (not `add server ... enabled`, which serves 503 until cycled).
func addServer(rt RuntimeClient, backend string, s Server, defaults []string) error {
	if err := rt.AddServer(backend, s.Name, AddArgs(s, defaults)); err != nil {
		return fmt.Errorf("add server %s/%s: %w", backend, s.Name, err)
	}
	if HasCheck(s, defaults) {
		if err := rt.EnableServerHealth(backend, s.Name); err != nil {
			return fmt.Errorf("enable health %s/%s: %w", backend, s.Name, err)
		}
	}
	if err := rt.SetServerState(backend, s.Name, "ready"); err != nil {
		return fmt.Errorf("enable server %s/%s: %w", backend, s.Name, err)
	}
	return nil
}

// RetryDrain tries to delete a draining server; past its deadline it shuts its sessions down
// first. It reports whether the drain is over.
func RetryDrain(rt RuntimeClient, d *Drain, now time.Time) (bool, error) {
	var err error
	if d.Slot {
		err = slotInUse(rt, d.Backend, d.Name)
	} else {
		err = rt.DeleteServer(d.Backend, d.Name)
	}
	switch {
	case err == nil || errNoSuchServer(err):
		return true, nil
	case !errStillUsed(err):
		return true, fmt.Errorf("del server %s: %w", d.Key(), err)
	case now.Before(d.Deadline):
		return false, nil
	case !d.Forced:
		d.Forced, d.ForcedAt = true, now
		_, err := rt.ExecuteRaw("shutdown sessions server " + d.Key())
		return false, err
	case now.After(d.ForcedAt.Add(5 * time.Second)):
		return true, fmt.Errorf("del server %s: connections still attached 5s after shutting its sessions down; it stays in maintenance until the next reload", d.Key())
	}
	return false, nil
}

// errSlotInUse says a slot still has connections, like `del server`'s "still has connections".
var errSlotInUse = errors.New("server still has connections attached")

// slotInUse is nil when the static server has no connection left, in use or idle (`show
// servers conn`), errSlotInUse when it has, and a "No such server" error when it is gone.
func slotInUse(rt RuntimeClient, backend, name string) error {
	out, err := rt.ExecuteRaw("show servers conn " + backend)
	if err != nil {
		return fmt.Errorf("show servers conn %s: %w", backend, err)
	}
	for _, line := range strings.Split(strings.Join(out, ""), "\n") {
		f := strings.Fields(line)
		// bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur ...
		if len(f) < 13 || f[0] != backend+"/"+name {
			continue
		}
		if f[6] != "0" || f[12] != "0" {
			return errSlotInUse
		}
		return nil
	}
	return errors.New("No such server")
}

// DumpServerState writes `show servers state` to path, so the next worker starts with the
// current health, drain states and weights (load-server-state-from-file).
//
// Servers in forced maintenance are left out: clbd puts a server there only to drain it before
// `del server`, and a member registered again while it drains would otherwise start in
// maintenance in the next worker and serve nothing. Every line ends with a newline: haproxy
// ignores the whole file ("corrupted global server state file") when the last one does not,
// and client-native trims it.
func DumpServerState(rt RuntimeClient, write func([]byte) error) error {
	out, err := rt.ExecuteRaw("show servers state")
	if err != nil {
		return fmt.Errorf("show servers state: %w", err)
	}
	if len(out) == 0 {
		return errors.New("show servers state: no answer")
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.Join(out, ""), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		// Fields of format 1: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
		if len(f) > 6 && !strings.HasPrefix(f[0], "#") {
			if admin, err := strconv.Atoi(f[6]); err == nil && admin&srvAdminForcedMaint != 0 {
				continue
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return write([]byte(b.String()))
}

// srvAdminForcedMaint is haproxy's SRV_ADMF_FMAINT: maintenance set through the runtime API.
const srvAdminForcedMaint = 0x01

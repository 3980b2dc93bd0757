package clbdcli

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"clb/agent"
	"clb/agent/api"
	"clb/agent/config"
	"clb/agent/reconcile"
)

// The tables of clbd status and clbd members: pure functions of the decoded API answers and
// the time they are shown at (relative times are computed against now), so that golden files
// pin them (testdata/*.golden). Columns keep their order; scripts should use --json.

// recentShown is how many of /v1/status's recent_applies clbd status shows.
const recentShown = 5

// statusReport is `clbd status --json`: the answers of GET /v1/status and GET /v1/services
// side by side, as the API gave them.
type statusReport struct {
	Status   agent.Status      `json:"status"`
	Services []api.ServiceView `json:"services"`
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// renderStatus writes clbd status: the daemon, then the services with their members, then the
// last applies.
func renderStatus(out io.Writer, st agent.Status, services []api.ServiceView, now time.Time) error {
	return trimmed(out, func(w io.Writer) error { return statusTables(w, st, services, now) })
}

// renderMembers writes clbd members SERVICE: the service, its zones and its members.
func renderMembers(out io.Writer, s api.ServiceView, now time.Time) error {
	return trimmed(out, func(w io.Writer) error { return memberTables(w, s, now) })
}

// trimmed writes what render writes without the spaces tabwriter pads empty last cells with.
func trimmed(out io.Writer, render func(io.Writer) error) error {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		nl := strings.HasSuffix(line, "\n")
		line = strings.TrimRight(line, " \n")
		if nl {
			line += "\n"
		}
		if _, err := io.WriteString(out, line); err != nil {
			return err
		}
	}
	return nil
}

func statusTables(w io.Writer, st agent.Status, services []api.ServiceView, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "CLBD\n")
	row(tw, "version", fmt.Sprintf("%s, up %s", orDash(st.Version), orDash(st.Uptime)))
	mode := st.Mode
	if st.HaproxyPID > 0 {
		mode += fmt.Sprintf(", haproxy pid %d", st.HaproxyPID)
	}
	if st.HaproxyRestarts > 0 {
		mode += fmt.Sprintf(", restarted %d times", st.HaproxyRestarts)
	}
	row(tw, "mode", mode)
	row(tw, "haproxy", orDash(st.HaproxyVersion))
	row(tw, "config", fmt.Sprintf("%s (from %s)", orDash(st.Output), orDash(st.Template)))
	if st.RuntimeAPI != "" {
		row(tw, "runtime socket", st.RuntimeAPI)
	} else {
		row(tw, "runtime socket", "none: every change reloads")
	}
	row(tw, "store", storeLine(st, now))
	row(tw, "last apply", applyLine(st.LastApply, now))
	if st.LastApply.Error != "" {
		row(tw, "  error", oneLine(st.LastApply.Error))
	}
	if st.LastApply.RuntimeError != "" {
		row(tw, "  runtime error", oneLine(st.LastApply.RuntimeError))
	}
	if st.LastApply.Checksum != "" {
		row(tw, "  config sha256", st.LastApply.Checksum)
	}
	row(tw, "reloads", strconv.FormatUint(st.Reloads, 10))
	row(tw, "apply failures", strconv.FormatUint(st.ApplyFailures, 10))
	pending := strconv.Itoa(st.PendingChanges)
	if st.PendingChanges > 0 {
		pending += " (saved, not yet running in haproxy; retried with backoff)"
	}
	row(tw, "pending changes", pending)
	fallbacks := strconv.FormatUint(st.RuntimeFallbacks, 10)
	if st.LastRuntimeError != "" {
		fallbacks += ", last: " + oneLine(st.LastRuntimeError)
	}
	row(tw, "runtime fallbacks", fallbacks)
	row(tw, "draining servers", strconv.Itoa(st.Draining))
	for _, be := range sortedKeys(st.ReloadOnly) {
		row(tw, "reload-only", be+": "+oneLine(st.ReloadOnly[be]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nSERVICES\n")
	if len(services) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	} else {
		tw = newTable(w)
		fmt.Fprintf(tw, "  SERVICE\tLISTENERS\tBALANCE\tSTICKY\tZONES\tMEMBERS\tUP\tDRAINING\n")
		for _, s := range services {
			up := 0
			for _, m := range s.Members {
				if m.Health == "up" {
					up++
				}
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", s.Name, listeners(s.Listeners), orDash(s.Balance), yesNo(s.Sticky),
				zonesLine(s.Zones), len(s.Members), up, len(s.Draining))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, s := range services {
		fmt.Fprintf(w, "\nMEMBERS OF %s\n", s.Name)
		if err := memberTable(w, s, now); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nRECENT APPLIES (newest first)\n")
	if len(st.RecentApplies) == 0 {
		fmt.Fprintf(w, "  (none)\n")
		return nil
	}
	tw = newTable(w)
	fmt.Fprintf(tw, "  WHEN\tRESULT\tPATH\tDURATION\tERROR\n")
	for _, a := range st.RecentApplies[:min(recentShown, len(st.RecentApplies))] {
		msg := a.Error
		if msg == "" && a.RuntimeError != "" {
			msg = "runtime: " + a.RuntimeError
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", relTime(a.Time, now), a.Result, orDash(a.Path), ms(a.DurationMS), clip(oneLine(msg), 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more := len(st.RecentApplies) - recentShown; more > 0 {
		fmt.Fprintf(w, "  (%d older: clbd status --json)\n", more)
	}
	return nil
}

func memberTables(w io.Writer, s api.ServiceView, now time.Time) error {
	fmt.Fprintf(w, "SERVICE %s: %s, balance %s, sticky %s\n", s.Name, listeners(s.Listeners), orDash(s.Balance), yesNo(s.Sticky))
	if len(s.Zones) > 0 {
		tw := newTable(w)
		fmt.Fprintf(tw, "\n  ZONE\tENABLED\tMEMBERS\n")
		for _, z := range s.Zones {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", z.Name, yesNo(z.Enabled), z.Members)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return memberTable(w, s, now)
}

// memberTable is the members of a service, then the ones draining.
func memberTable(w io.Writer, s api.ServiceView, now time.Time) error {
	if len(s.Members) == 0 {
		fmt.Fprintf(w, "  (no members)\n")
	} else {
		disabled := map[string]bool{}
		for _, z := range s.Zones {
			disabled[z.Name] = !z.Enabled
		}
		tw := newTable(w)
		fmt.Fprintf(tw, "  MEMBER\tADDRESS\tZONE\tWEIGHT\tHEALTH\tLEASE\n")
		for _, m := range s.Members {
			zone := orDash(m.Zone)
			if disabled[m.Zone] {
				zone += " (disabled)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", m.Name, hostPort(m.Address, m.Port), zone, m.Weight, m.Health, lease(m, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(s.Draining) > 0 {
		fmt.Fprintf(w, "  draining (left, haproxy finishes their connections): %s\n", strings.Join(s.Draining, ", "))
	}
	return nil
}

func row(tw io.Writer, k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }

func storeLine(st agent.Status, now time.Time) string {
	s := st.Store
	if s.Type == "" {
		return "-"
	}
	line := s.Type
	if s.Available {
		line += ": available"
	} else {
		line += ": UNAVAILABLE"
		if !s.Since.IsZero() {
			line += " since " + relTime(s.Since, now)
		}
		if s.Error != "" {
			line += ": " + oneLine(s.Error)
		}
	}
	line += fmt.Sprintf(", revision %d", s.Revision)
	if s.Type == config.StoreEtcd {
		line += fmt.Sprintf(", %d resyncs", s.Resyncs)
		if len(s.Endpoints) > 0 {
			line += ", " + strings.Join(s.Endpoints, ",")
		}
	}
	return line
}

func applyLine(a reconcile.ApplyStatus, now time.Time) string {
	if a.Time.IsZero() && a.Result == "" {
		return "none yet"
	}
	line := a.Result
	if a.Result != "ok" {
		line = strings.ToUpper(a.Result)
	}
	if a.Path != "" {
		line += " via " + a.Path
	}
	return fmt.Sprintf("%s, %s (%s), took %s", line, relTime(a.Time, now), a.Time.UTC().Format(time.RFC3339), ms(a.DurationMS))
}

func listeners(ls []config.Listener) string {
	if len(ls) == 0 {
		return "-"
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		addr := l.Address
		if addr == "" {
			addr = "*"
		}
		out[i] = fmt.Sprintf("%s %s->%d", orDash(l.Protocol), hostPort(addr, l.Port), l.MemberPort)
	}
	return strings.Join(out, ", ")
}

func zonesLine(zs []api.ZoneView) string {
	if len(zs) == 0 {
		return "-"
	}
	out := make([]string, len(zs))
	for i, z := range zs {
		out[i] = z.Name
		if !z.Enabled {
			out[i] += " (disabled)"
		}
	}
	return strings.Join(out, ", ")
}

// lease is "permanent", "30s, expires in 12s", "30s, lapsed 2s ago", or just the TTL when the
// store does not know the expiry (etcd keeps it).
func lease(m api.MemberView, now time.Time) string {
	if m.LeaseTTL == "" {
		return "permanent"
	}
	if m.LeaseExpires == nil {
		return m.LeaseTTL
	}
	if m.LeaseExpires.Before(now) {
		return fmt.Sprintf("%s, lapsed %s", m.LeaseTTL, relTime(*m.LeaseExpires, now))
	}
	return fmt.Sprintf("%s, expires %s", m.LeaseTTL, relTime(*m.LeaseExpires, now))
}

// relTime is "12s ago" or "in 12s".
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + shortDuration(-d)
	}
	return shortDuration(d) + " ago"
}

// shortDuration rounds d for people: 850ms, 12s, 4m12s, 3h4m, 2d3h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s") // 3h4m0s: always m0s
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d-time.Duration(days)*24*time.Hour)/time.Hour))
}

func ms(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "ms" }

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps an error on one table row (haproxy -c output has several lines).
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " / ")), " ")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

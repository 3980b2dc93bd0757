package haproxy

import (
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Stat is one backend or server row of `show stat`: haproxy's counters since the worker
// started (a reload starts them again at zero) and its current gauges. Columns haproxy leaves
// empty for the row (a TCP backend has no HTTP responses) are zero.
type Stat struct {
	// Proxy and Server are pxname and svname ("BACKEND" for a backend's own row).
	Proxy, Server string
	// Status is haproxy's status text: "UP", "UP 1/3" (going down), "DOWN", "DOWN 1/2"
	// (coming up), "NOLB", "MAINT", "MAINT (via ...)", "MAINT (resolution)", "DRAIN",
	// "no check".
	Status string
	Weight int
	// Scur is the current sessions, Qcur the requests queued for this server or backend.
	Scur, Qcur int64
	// Stot is sessions (TCP connections or, in HTTP mode, requests) sent to it; retries
	// count again. ReqTot is HTTP requests (req_tot; HTTP mode only).
	Stot, ReqTot uint64
	// Rate is haproxy's own sessions per second over the last second.
	Rate int64
	// HTTP responses by class: hrsp_1xx ... hrsp_5xx, hrsp_other.
	Hrsp1xx, Hrsp2xx, Hrsp3xx, Hrsp4xx, Hrsp5xx, HrspOther uint64
	// Econ: connection errors to the server; Eresp: response errors (the server closed or
	// sent garbage); Wretr: retried connections; Wredis: redispatches to another server.
	Econ, Eresp, Wretr, Wredis uint64
	// Qtime, Ctime, Rtime, Ttime are haproxy's averages over the last 1024 requests, in ms:
	// queue, connect, response (server's first byte) and total session time.
	Qtime, Ctime, Rtime, Ttime int64
	// Chkfail counts failed health checks.
	Chkfail uint64
	// Bin and Bout are bytes in and out.
	Bin, Bout uint64
	// CheckStatus is the last health check's result (L4OK, L7OK, L4CON, L7STS, ...; "" when
	// not checked).
	CheckStatus string
	// HTTP: the row has HTTP counters (req_tot is not empty).
	HTTP bool
}

// Requests is the row's request count: HTTP requests in HTTP mode, sessions in TCP mode.
func (s Stat) Requests() uint64 {
	if s.HTTP {
		return s.ReqTot
	}
	return s.Stot
}

// Up reports whether haproxy's checks let the server take traffic: UP (also while going
// down: "UP 1/3"), NOLB, DRAIN (healthy, given no new requests) and "no check".
func (s Stat) Up() bool {
	st := s.Status
	return strings.HasPrefix(st, "UP") || st == "NOLB" || st == "DRAIN" || st == "no check"
}

// BackendStat is a backend's own row and its servers' rows, by server name.
type BackendStat struct {
	Backend Stat
	Servers map[string]Stat
}

// statColumns maps each column clbd reads to the field it fills. Columns are found by header
// name: haproxy adds columns between versions and the order is not a contract.
var statColumns = map[string]func(s *Stat, v string) error{
	"status":       func(s *Stat, v string) error { s.Status = v; return nil },
	"weight":       func(s *Stat, v string) (err error) { s.Weight, err = atoiEmpty(v); return },
	"scur":         func(s *Stat, v string) (err error) { s.Scur, err = int64Empty(v); return },
	"qcur":         func(s *Stat, v string) (err error) { s.Qcur, err = int64Empty(v); return },
	"stot":         func(s *Stat, v string) (err error) { s.Stot, err = uintEmpty(v); return },
	"req_tot":      func(s *Stat, v string) (err error) { s.HTTP = v != ""; s.ReqTot, err = uintEmpty(v); return },
	"rate":         func(s *Stat, v string) (err error) { s.Rate, err = int64Empty(v); return },
	"hrsp_1xx":     func(s *Stat, v string) (err error) { s.Hrsp1xx, err = uintEmpty(v); return },
	"hrsp_2xx":     func(s *Stat, v string) (err error) { s.Hrsp2xx, err = uintEmpty(v); return },
	"hrsp_3xx":     func(s *Stat, v string) (err error) { s.Hrsp3xx, err = uintEmpty(v); return },
	"hrsp_4xx":     func(s *Stat, v string) (err error) { s.Hrsp4xx, err = uintEmpty(v); return },
	"hrsp_5xx":     func(s *Stat, v string) (err error) { s.Hrsp5xx, err = uintEmpty(v); return },
	"hrsp_other":   func(s *Stat, v string) (err error) { s.HrspOther, err = uintEmpty(v); return },
	"econ":         func(s *Stat, v string) (err error) { s.Econ, err = uintEmpty(v); return },
	"eresp":        func(s *Stat, v string) (err error) { s.Eresp, err = uintEmpty(v); return },
	"wretr":        func(s *Stat, v string) (err error) { s.Wretr, err = uintEmpty(v); return },
	"wredis":       func(s *Stat, v string) (err error) { s.Wredis, err = uintEmpty(v); return },
	"qtime":        func(s *Stat, v string) (err error) { s.Qtime, err = int64Empty(v); return },
	"ctime":        func(s *Stat, v string) (err error) { s.Ctime, err = int64Empty(v); return },
	"rtime":        func(s *Stat, v string) (err error) { s.Rtime, err = int64Empty(v); return },
	"ttime":        func(s *Stat, v string) (err error) { s.Ttime, err = int64Empty(v); return },
	"chkfail":      func(s *Stat, v string) (err error) { s.Chkfail, err = uintEmpty(v); return },
	"bin":          func(s *Stat, v string) (err error) { s.Bin, err = uintEmpty(v); return },
	"bout":         func(s *Stat, v string) (err error) { s.Bout, err = uintEmpty(v); return },
	"check_status": func(s *Stat, v string) error { s.CheckStatus = v; return nil },
}

// ParseStat reads the CSV of `show stat` into each backend's row and server rows, by backend
// name; frontends and listeners are left out. The header line ("# pxname,svname,...") says
// which column is which. A header without pxname, svname or type, or a malformed number in a
// column clbd reads, is an error naming the row.
func ParseStat(out string) (map[string]BackendStat, error) {
	header, body, ok := strings.Cut(strings.TrimLeft(out, " \n"), "\n")
	if !ok && strings.TrimSpace(header) == "" {
		return nil, errors.New("show stat: empty answer")
	}
	if !strings.HasPrefix(header, "#") {
		return nil, fmt.Errorf("show stat: no header line, got %q", trimOut(header))
	}
	names := strings.Split(strings.TrimSpace(strings.TrimPrefix(header, "#")), ",")
	col := map[string]int{}
	for i, n := range names {
		col[strings.TrimSpace(n)] = i
	}
	for _, need := range []string{"pxname", "svname", "type"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("show stat: header has no %s column", need)
		}
	}
	// The columns clbd reads that this haproxy has, in header order (a missing one stays zero).
	type setter struct {
		name string
		i    int
		set  func(*Stat, string) error
	}
	var setters []setter
	for name, set := range statColumns {
		if i, ok := col[name]; ok {
			setters = append(setters, setter{name, i, set})
		}
	}
	slices.SortFunc(setters, func(a, b setter) int { return a.i - b.i })
	out2 := map[string]BackendStat{}
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		// Fast path: haproxy quotes a cell only when it holds a comma or a quote (a check
		// description, say); a row of 10,000 servers is parsed every poll.
		var rec []string
		if strings.IndexByte(line, '"') < 0 {
			rec = strings.Split(line, ",")
		} else {
			r := csv.NewReader(strings.NewReader(line))
			r.FieldsPerRecord = -1
			var err error
			if rec, err = r.Read(); err != nil {
				return nil, fmt.Errorf("show stat: %w", err)
			}
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return rec[i]
			}
			return ""
		}
		// type: 0 frontend, 1 backend, 2 server, 3 listener.
		typ := get("type")
		if typ != "1" && typ != "2" {
			continue
		}
		s := Stat{Proxy: get("pxname"), Server: get("svname")}
		for _, st := range setters {
			v := ""
			if st.i < len(rec) {
				v = rec[st.i]
			}
			if err := st.set(&s, v); err != nil {
				return nil, fmt.Errorf("show stat: %s/%s: column %s: %w", s.Proxy, s.Server, st.name, err)
			}
		}
		b := out2[s.Proxy]
		if b.Servers == nil {
			b.Servers = map[string]Stat{}
		}
		if typ == "1" {
			b.Backend = s
		} else {
			b.Servers[s.Server] = s
		}
		out2[s.Proxy] = b
	}
	return out2, nil
}

// StatSample is one `show info;show stat` answer: which worker gave it and its rows.
type StatSample struct {
	// Pid is the worker's process id: a new one (a reload, a restart) starts every counter
	// again at zero.
	Pid int
	// Stopping: the answer came from an old worker finishing its requests after a reload;
	// its counters are not the running worker's.
	Stopping bool
	Backends map[string]BackendStat
}

// ShowStat samples haproxy's counters: `show info;show stat -1 6 -1` (backends and servers,
// no frontends) on one connection, so that the process id and the counters come from the
// same worker.
func ShowStat(rt RuntimeClient) (StatSample, error) {
	out, err := rt.ExecuteRaw("show info;show stat -1 6 -1")
	if err != nil {
		return StatSample{}, fmt.Errorf("show stat: %w", err)
	}
	return ParseInfoStat(strings.Join(out, ""))
}

// ParseInfoStat reads the answer to `show info;show stat`: the info's "Key: value" lines up to
// the CSV header, then the CSV (ParseStat). An answer without a Pid is an error.
func ParseInfoStat(out string) (StatSample, error) {
	info, csvPart := out, ""
	if i := strings.Index(out, "\n# "); i >= 0 {
		info, csvPart = out[:i], out[i+1:]
	} else if strings.HasPrefix(out, "# ") {
		info, csvPart = "", out
	}
	var s StatSample
	pid := false
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Pid":
			n, err := strconv.Atoi(v)
			if err != nil {
				return StatSample{}, fmt.Errorf("show info: Pid %q: %w", v, err)
			}
			s.Pid, pid = n, true
		case "Stopping":
			s.Stopping = v == "1"
		}
	}
	if !pid {
		return StatSample{}, fmt.Errorf("show info: no Pid in %q", trimOut(strings.TrimSpace(info)))
	}
	b, err := ParseStat(csvPart)
	if err != nil {
		return StatSample{}, err
	}
	s.Backends = b
	return s, nil
}

func uintEmpty(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.ParseUint(v, 10, 64)
}

func int64Empty(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

func atoiEmpty(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	return strconv.Atoi(v)
}

func trimOut(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

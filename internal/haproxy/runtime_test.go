package haproxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// recordingRuntime is a RuntimeClient that records each call as one line and fails the
// commands listed in fail (by that line):
//
//	add B/S ATTRS | del B/S | state B/S STATE | weight B/S W | addr B/S IP PORT | health B/S | raw COMMAND
//
// and answers raw commands with out[COMMAND].
type recordingRuntime struct {
	calls []string
	fail  map[string]error
	out   map[string]string
}

func (r *recordingRuntime) do(call string) error {
	r.calls = append(r.calls, call)
	return r.fail[call]
}

func (r *recordingRuntime) AddServer(backend, name, attributes string) error {
	return r.do("add " + backend + "/" + name + " " + attributes)
}

func (r *recordingRuntime) DeleteServer(backend, name string) error {
	return r.do("del " + backend + "/" + name)
}

func (r *recordingRuntime) SetServerState(backend, server, state string) error {
	return r.do("state " + backend + "/" + server + " " + state)
}

func (r *recordingRuntime) SetServerWeight(backend, server, weight string) error {
	return r.do("weight " + backend + "/" + server + " " + weight)
}

func (r *recordingRuntime) EnableServerHealth(backend, server string) error {
	return r.do("health " + backend + "/" + server)
}

func (r *recordingRuntime) SetServerAddr(backend, server, ip string, port int) error {
	return r.do(fmt.Sprintf("addr %s/%s %s %d", backend, server, ip, port))
}

func (r *recordingRuntime) ExecuteRaw(command string) ([]string, error) {
	err := r.do("raw " + command)
	if out, ok := r.out[command]; ok {
		return []string{out}, err
	}
	return nil, err
}

// Errors as haproxy 2.6 words them (client-native passes the text on).
var (
	errAttached = errors.New("Server still has connections attached to it, cannot remove it.")
	errNoServer = errors.New("No such server.")
	errSocket   = errors.New("write unix ->/run/clb/admin.sock: broken pipe")
)

func added(backend, name, addr string, args ...string) ServerChange {
	return ServerChange{Backend: backend, New: &Server{Name: name, Addr: addr, Args: args}}
}

func removed(backend, name, addr string) ServerChange {
	return ServerChange{Backend: backend, Old: &Server{Name: name, Addr: addr, Args: []string{"weight", "100"}}}
}

func changed(backend, name, oldAddr, newAddr string, oldArgs, newArgs []string) ServerChange {
	return ServerChange{Backend: backend, Old: &Server{Name: name, Addr: oldAddr, Args: oldArgs}, New: &Server{Name: name, Addr: newAddr, Args: newArgs}}
}

func TestApplyServers(t *testing.T) {
	defaults := map[string][]string{
		"web_80": {"init-addr", "last,libc,none", "check", "inter", "2000ms"},
		"tcp_25": {"pool-purge-delay", "500ms"},
	}
	drainFor := map[string]time.Duration{"web_80": 30 * time.Second, "tcp_25": 2 * time.Minute}
	w := func(n string) []string { return []string{"weight", n} }

	type drain struct {
		key      string
		drainFor time.Duration
	}
	for _, tc := range []struct {
		name       string
		changes    []ServerChange
		fail       map[string]error
		wantCalls  []string
		wantDrains []drain
		wantErr    string // "" = none; else a substring
		wantIs     error  // the error wraps it
	}{
		{
			name:    "added, with checks from default-server",
			changes: []ServerChange{added("web_80", "m1", "127.0.0.1:8000", "weight", "100")},
			wantCalls: []string{
				"add web_80/m1 127.0.0.1:8000 check inter 2000ms weight 100",
				"health web_80/m1",
				"state web_80/m1 ready",
			},
		},
		{
			name:      "added, with its own check",
			changes:   []ServerChange{added("tcp_25", "m1", "127.0.0.1:2525", "check", "weight", "3")},
			wantCalls: []string{"add tcp_25/m1 127.0.0.1:2525 pool-purge-delay 500ms check weight 3", "health tcp_25/m1", "state tcp_25/m1 ready"},
		},
		{
			name:      "added, no check: no enable health",
			changes:   []ServerChange{added("tcp_25", "m1", "127.0.0.1:2525", "weight", "100")},
			wantCalls: []string{"add tcp_25/m1 127.0.0.1:2525 pool-purge-delay 500ms weight 100", "state tcp_25/m1 ready"},
		},
		{
			name:      "added to a backend without default-server",
			changes:   []ServerChange{added("other", "m1", "[::1]:80", "weight", "1")},
			wantCalls: []string{"add other/m1 [::1]:80 weight 1", "state other/m1 ready"},
		},
		{
			name:      "removed: maint then del",
			changes:   []ServerChange{removed("web_80", "m1", "127.0.0.1:8000")},
			wantCalls: []string{"state web_80/m1 maint", "del web_80/m1"},
		},
		{
			name:       "removed with connections attached: a drain until now+drainFor(backend)",
			changes:    []ServerChange{removed("web_80", "m1", "127.0.0.1:8000"), removed("tcp_25", "m2", "127.0.0.1:2525")},
			fail:       map[string]error{"del web_80/m1": errAttached, "del tcp_25/m2": errAttached},
			wantCalls:  []string{"state web_80/m1 maint", "del web_80/m1", "state tcp_25/m2 maint", "del tcp_25/m2"},
			wantDrains: []drain{{"web_80/m1", 30 * time.Second}, {"tcp_25/m2", 2 * time.Minute}},
		},
		{
			name:      "removed, already gone at maint: done, no del",
			changes:   []ServerChange{removed("web_80", "m1", "127.0.0.1:8000"), removed("web_80", "m2", "127.0.0.2:8000")},
			fail:      map[string]error{"state web_80/m1 maint": errNoServer},
			wantCalls: []string{"state web_80/m1 maint", "state web_80/m2 maint", "del web_80/m2"},
		},
		{
			name:      "removed, already gone at del: done",
			changes:   []ServerChange{removed("web_80", "m1", "127.0.0.1:8000"), removed("web_80", "m2", "127.0.0.2:8000")},
			fail:      map[string]error{"del web_80/m1": errNoServer},
			wantCalls: []string{"state web_80/m1 maint", "del web_80/m1", "state web_80/m2 maint", "del web_80/m2"},
		},
		{
			name:      "removed, backend gone: done",
			changes:   []ServerChange{removed("web_80", "m1", "127.0.0.1:8000")},
			fail:      map[string]error{"state web_80/m1 maint": errors.New("No such backend.")},
			wantCalls: []string{"state web_80/m1 maint"},
		},
		{
			name:      "weight only: set weight",
			changes:   []ServerChange{changed("web_80", "m1", "127.0.0.1:8000", "127.0.0.1:8000", w("100"), w("0"))},
			wantCalls: []string{"weight web_80/m1 0"},
		},
		{
			name:      "address changed: set server addr",
			changes:   []ServerChange{changed("web_80", "m1", "127.0.0.1:8000", "127.0.0.2:8000", w("100"), w("100"))},
			wantCalls: []string{"addr web_80/m1 127.0.0.2 8000"},
		},
		{
			name:    "other argument changed: an error, nothing sent",
			changes: []ServerChange{changed("web_80", "m1", "127.0.0.1:8000", "127.0.0.1:8000", w("100"), []string{"weight", "50", "backup"})},
			wantErr: "server web_80/m1 changed more than its address, weight or state",
		},
		{
			name: "in order, one of each",
			changes: []ServerChange{
				removed("tcp_25", "a", "127.0.0.1:2525"),
				added("web_80", "b", "127.0.0.2:8000", "weight", "7"),
				changed("web_80", "c", "127.0.0.3:8000", "127.0.0.3:8000", w("1"), w("2")),
			},
			wantCalls: []string{
				"state tcp_25/a maint", "del tcp_25/a",
				"add web_80/b 127.0.0.2:8000 check inter 2000ms weight 7", "health web_80/b", "state web_80/b ready",
				"weight web_80/c 2",
			},
		},
		{
			name:      "add fails: stops at once",
			changes:   []ServerChange{added("web_80", "m1", "127.0.0.1:8000", "weight", "1"), added("web_80", "m2", "127.0.0.2:8000", "weight", "1")},
			fail:      map[string]error{"add web_80/m1 127.0.0.1:8000 check inter 2000ms weight 1": errSocket},
			wantCalls: []string{"add web_80/m1 127.0.0.1:8000 check inter 2000ms weight 1"},
			wantErr:   "add server web_80/m1",
			wantIs:    errSocket,
		},
		{
			name:      "enable health fails: stops, server not made ready",
			changes:   []ServerChange{added("web_80", "m1", "127.0.0.1:8000", "weight", "1"), removed("web_80", "m2", "127.0.0.2:8000")},
			fail:      map[string]error{"health web_80/m1": errSocket},
			wantCalls: []string{"add web_80/m1 127.0.0.1:8000 check inter 2000ms weight 1", "health web_80/m1"},
			wantErr:   "enable health web_80/m1",
			wantIs:    errSocket,
		},
		{
			name:      "enable server fails: stops",
			changes:   []ServerChange{added("tcp_25", "m1", "127.0.0.1:2525"), removed("web_80", "m2", "127.0.0.2:8000")},
			fail:      map[string]error{"state tcp_25/m1 ready": errSocket},
			wantCalls: []string{"add tcp_25/m1 127.0.0.1:2525 pool-purge-delay 500ms", "state tcp_25/m1 ready"},
			wantErr:   "enable server tcp_25/m1",
			wantIs:    errSocket,
		},
		{
			name:      "maint fails: stops, no del",
			changes:   []ServerChange{removed("web_80", "m1", "127.0.0.1:8000"), removed("web_80", "m2", "127.0.0.2:8000")},
			fail:      map[string]error{"state web_80/m1 maint": errSocket},
			wantCalls: []string{"state web_80/m1 maint"},
			wantErr:   "drain web_80/m1",
			wantIs:    errSocket,
		},
		{
			name:       "del fails: stops, drains so far returned",
			changes:    []ServerChange{removed("web_80", "m1", "127.0.0.1:8000"), removed("web_80", "m2", "127.0.0.2:8000"), removed("web_80", "m3", "127.0.0.3:8000")},
			fail:       map[string]error{"del web_80/m1": errAttached, "del web_80/m2": errSocket},
			wantCalls:  []string{"state web_80/m1 maint", "del web_80/m1", "state web_80/m2 maint", "del web_80/m2"},
			wantDrains: []drain{{"web_80/m1", 30 * time.Second}},
			wantErr:    "del server web_80/m2",
			wantIs:     errSocket,
		},
		{
			name: "set weight fails: stops",
			changes: []ServerChange{
				changed("web_80", "m1", "127.0.0.1:8000", "127.0.0.1:8000", w("1"), w("2")),
				changed("web_80", "m2", "127.0.0.2:8000", "127.0.0.2:8000", w("1"), w("2")),
			},
			fail:      map[string]error{"weight web_80/m1 2": errSocket},
			wantCalls: []string{"weight web_80/m1 2"},
			wantErr:   "set weight web_80/m1",
			wantIs:    errSocket,
		},
		{
			name:    "no changes, no calls",
			changes: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingRuntime{fail: tc.fail}
			before := time.Now()
			drains, err := ApplyServers(rt, tc.changes, defaults, func(b string) time.Duration { return drainFor[b] })
			after := time.Now()

			if !slices.Equal(rt.calls, tc.wantCalls) {
				t.Errorf("calls =\n  %q\nwant\n  %q", rt.calls, tc.wantCalls)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want one saying %q", err, tc.wantErr)
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Errorf("err = %v, want it to wrap %v", err, tc.wantIs)
			}
			if len(drains) != len(tc.wantDrains) {
				t.Fatalf("drains = %+v, want %+v", drains, tc.wantDrains)
			}
			for i, d := range drains {
				want := tc.wantDrains[i]
				if d.Key() != want.key {
					t.Errorf("drain %d = %s, want %s", i, d.Key(), want.key)
				}
				if lo, hi := before.Add(want.drainFor), after.Add(want.drainFor); d.Deadline.Before(lo) || d.Deadline.After(hi) {
					t.Errorf("drain %s deadline = %v, want now+%v (between %v and %v)", d.Key(), d.Deadline, want.drainFor, lo, hi)
				}
				if d.Forced {
					t.Errorf("drain %s Forced = true, want false", d.Key())
				}
			}
		})
	}
}

func TestRetryDrain(t *testing.T) {
	deadline := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	const (
		del      = "del web_80/m1"
		shutdown = "raw shutdown sessions server web_80/m1"
	)
	for _, tc := range []struct {
		name       string
		forced     bool
		now        time.Time
		fail       map[string]error
		wantDone   bool
		wantErr    string // "" = none; else a substring
		wantForced bool
		wantCalls  []string
	}{
		{"deleted", false, deadline.Add(-time.Second), nil, true, "", false, []string{del}},
		{"deleted after it was forced", true, deadline.Add(2 * time.Second), nil, true, "", true, []string{del}},
		{"already gone", false, deadline.Add(-time.Second), map[string]error{del: errNoServer}, true, "", false, []string{del}},
		{"still used before the deadline", false, deadline.Add(-time.Second), map[string]error{del: errAttached}, false, "", false, []string{del}},
		{"still used just before the deadline", false, deadline.Add(-time.Nanosecond), map[string]error{del: errAttached}, false, "", false, []string{del}},
		{"still used at the deadline: shut down", false, deadline, map[string]error{del: errAttached}, false, "", true, []string{del, shutdown}},
		{"still used after the deadline: shut down", false, deadline.Add(time.Second), map[string]error{del: errAttached}, false, "", true, []string{del, shutdown}},
		{"still used after the deadline, already forced: waits, no second shutdown", true, deadline.Add(2 * time.Second), map[string]error{del: errAttached}, false, "", true, []string{del}},
		{"still used 5s after the shutdown, forced: still waits", true, deadline.Add(5 * time.Second), map[string]error{del: errAttached}, false, "", true, []string{del}},
		{"still used more than 5s after the shutdown, forced: gives up", true, deadline.Add(5*time.Second + time.Millisecond), map[string]error{del: errAttached}, true, "connections still attached 5s after shutting its sessions down", true, []string{del}},
		{"shutdown fails: its error, not done", false, deadline.Add(time.Second), map[string]error{del: errAttached, shutdown: errSocket}, false, "broken pipe", true, []string{del, shutdown}},
		{"other error: done with it", false, deadline.Add(-time.Second), map[string]error{del: errSocket}, true, "del server web_80/m1", false, []string{del}},
		{"other error after the deadline: done with it, no shutdown", false, deadline.Add(time.Hour), map[string]error{del: errSocket}, true, "del server web_80/m1", false, []string{del}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingRuntime{fail: tc.fail}
			d := &Drain{Backend: "web_80", Name: "m1", Deadline: deadline, Forced: tc.forced}
			if tc.forced {
				d.ForcedAt = deadline // shut down on time; TestRetryDrainSequence covers a late one
			}
			done, err := RetryDrain(rt, d, tc.now)
			if done != tc.wantDone {
				t.Errorf("done = %v, want %v", done, tc.wantDone)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if d.Forced != tc.wantForced {
				t.Errorf("Forced = %v, want %v", d.Forced, tc.wantForced)
			}
			if !slices.Equal(rt.calls, tc.wantCalls) {
				t.Errorf("calls = %q, want %q", rt.calls, tc.wantCalls)
			}
		})
	}
}

// TestRetryDrainSequence drives one drain through its life as the reconciler's ticks do:
// wait, shut its sessions down once, wait, give up.
func TestRetryDrainSequence(t *testing.T) {
	deadline := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at       time.Duration // from the deadline
		wantDone bool
		wantErr  bool
	}
	for _, tc := range []struct {
		name         string
		steps        []step
		wantShutdown int
		skip         string
	}{
		{
			name: "on time",
			steps: []step{
				{-10 * time.Second, false, false},
				{-50 * time.Millisecond, false, false},
				{0, false, false}, // shutdown
				{50 * time.Millisecond, false, false},
				{4 * time.Second, false, false},
				{5*time.Second + 50*time.Millisecond, true, true},
			},
			wantShutdown: 1,
		},
		{
			// The reconciler was busy (a long reload) past the deadline. The error claims 5s
			// since the shutdown, yet the next tick gives up 50ms after it: Drain keeps no
			// time of the shutdown, only the deadline.
			name: "first retry long after the deadline",
			steps: []step{
				{10 * time.Second, false, false}, // shutdown
				{10*time.Second + 50*time.Millisecond, false, false},
				{14 * time.Second, false, false},
				{15*time.Second + 50*time.Millisecond, true, true},
			},
			wantShutdown: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			rt := &recordingRuntime{fail: map[string]error{"del web_80/m1": errAttached}}
			d := &Drain{Backend: "web_80", Name: "m1", Deadline: deadline}
			for i, s := range tc.steps {
				done, err := RetryDrain(rt, d, deadline.Add(s.at))
				if done != s.wantDone || (err != nil) != s.wantErr {
					t.Fatalf("step %d (deadline + %v): done, err = %v, %v; want %v, error %v", i, s.at, done, err, s.wantDone, s.wantErr)
				}
			}
			shutdowns := 0
			for _, c := range rt.calls {
				if strings.HasPrefix(c, "raw shutdown sessions") {
					shutdowns++
				}
			}
			if shutdowns != tc.wantShutdown {
				t.Errorf("shutdowns sent = %d, want %d (calls %q)", shutdowns, tc.wantShutdown, rt.calls)
			}
		})
	}
}

// TestDrainKey: haproxy names a server BACKEND/SERVER.
func TestDrainKey(t *testing.T) {
	if got, want := (Drain{Backend: "web_80", Name: "10.0.0.1:8000"}).Key(), "web_80/10.0.0.1:8000"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
}

var _ RuntimeClient = (*recordingRuntime)(nil)

// TestApplySlots: a slot (a static server) takes a member by `set server` (address, weight,
// health, ready) and leaves by maint, drained until no connection to it is left.
func TestApplySlots(t *testing.T) {
	free := Server{Name: "s1", Addr: "127.0.0.1:1", Args: []string{"weight", "100", "disabled", "cookie", "s1"}}
	taken := Server{Name: "s1", Addr: "10.0.0.5:8080", Args: []string{"weight", "50", "cookie", "s1"}, Comment: "m1"}
	other := Server{Name: "s1", Addr: "10.0.0.6:8080", Args: []string{"weight", "50", "cookie", "s1"}, Comment: "m2"}
	byName := Server{Name: "s1", Addr: "web.example:8080", Args: []string{"weight", "50", "cookie", "s1"}, Comment: "m1"}
	defaults := map[string][]string{"b": {"check", "inter", "2s"}}
	for _, tc := range []struct {
		name      string
		old, new  Server
		wantCalls []string
		wantDrain bool
		wantErr   string
	}{
		{"takes a member", free, taken, []string{"addr b/s1 10.0.0.5 8080", "weight b/s1 50", "health b/s1", "state b/s1 ready"}, false, ""},
		{"leaves", taken, free, []string{"state b/s1 maint"}, true, ""},
		{"moves address (same slot, live)", taken, other, []string{"addr b/s1 10.0.0.6 8080"}, false, ""},
		{"member by host name: reload", free, byName, nil, false, "not an IP address"},
		{"other option changed: reload", free, Server{Name: "s1", Addr: "10.0.0.5:8080", Args: []string{"weight", "50", "cookie", "x"}}, nil, false, "changed more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingRuntime{}
			o, n := tc.old, tc.new
			drains, err := ApplyServers(rt, []ServerChange{{Backend: "b", Old: &o, New: &n}}, defaults, func(string) time.Duration { return time.Second })
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if !slices.Equal(rt.calls, tc.wantCalls) {
				t.Errorf("calls = %q, want %q", rt.calls, tc.wantCalls)
			}
			if got := len(drains) == 1; got != tc.wantDrain {
				t.Fatalf("drains = %+v, want a drain: %v", drains, tc.wantDrain)
			}
			if tc.wantDrain && (!drains[0].Slot || drains[0].Member != "m1" || drains[0].Key() != "b/s1") {
				t.Errorf("drain = %+v, want slot b/s1 of member m1", drains[0])
			}
		})
	}
}

func TestRetryDrainSlot(t *testing.T) {
	const header = "# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur idle_per_thr[2]\n"
	row := func(used, idle int) string {
		return header + fmt.Sprintf("b/s1 3/1 10.0.0.5 8080 - 500 %d 3 1 0 0 -1 %d 0 0\nb/s2 3/2 127.0.0.1 1 - 500 0 0 0 0 0 -1 0 0 0\n", used, idle)
	}
	deadline := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		out      string
		now      time.Time
		wantDone bool
		wantErr  string
	}{
		{"no connection left", row(0, 0), deadline.Add(-time.Second), true, ""},
		{"in use", row(2, 0), deadline.Add(-time.Second), false, ""},
		{"idle connections left", row(0, 1), deadline.Add(-time.Second), false, ""},
		{"slot gone", header, deadline.Add(-time.Second), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingRuntime{out: map[string]string{"show servers conn b": tc.out}}
			d := &Drain{Backend: "b", Name: "s1", Slot: true, Deadline: deadline}
			done, err := RetryDrain(rt, d, tc.now)
			if done != tc.wantDone || (err != nil) != (tc.wantErr != "") {
				t.Fatalf("RetryDrain = %v, %v; want %v, %q", done, err, tc.wantDone, tc.wantErr)
			}
			if slices.Contains(rt.calls, "del b/s1") {
				t.Errorf("a slot is never deleted: %q", rt.calls)
			}
		})
	}
}

// TestBatch: queued changes go out as one line of commands; DeleteServer and ExecuteRaw flush
// first; an answer at error severity fails the batch.
func TestBatch(t *testing.T) {
	rt := &recordingRuntime{out: map[string]string{
		"set server b/s1 addr 10.0.0.5 port 8080;set server b/s1 weight 50;enable health b/s1;set server b/s1 state ready": "[5]: no need to change the addr, port changed from '1' to '8080' by 'stats socket command'\n",
	}}
	b := NewBatch(rt)
	free := Server{Name: "s1", Addr: "127.0.0.1:1", Args: []string{"weight", "100", "disabled"}}
	taken := Server{Name: "s1", Addr: "10.0.0.5:8080", Args: []string{"weight", "50"}, Comment: "m1"}
	if _, err := ApplyServers(b, []ServerChange{{Backend: "b", Old: &free, New: &taken}}, map[string][]string{"b": {"check"}}, nil); err != nil {
		t.Fatal(err)
	}
	if len(rt.calls) != 0 {
		t.Fatalf("sent before Flush: %q", rt.calls)
	}
	if err := b.Flush(); err != nil {
		t.Fatalf("Flush: %v (a notice is no error)", err)
	}
	want := []string{"raw set server b/s1 addr 10.0.0.5 port 8080;set server b/s1 weight 50;enable health b/s1;set server b/s1 state ready"}
	if !slices.Equal(rt.calls, want) {
		t.Errorf("calls = %q, want %q", rt.calls, want)
	}

	rt = &recordingRuntime{out: map[string]string{"set server b/s9 state maint": "[3]: No such server.\n"}}
	b = NewBatch(rt)
	b.SetServerState("b", "s9", "maint")
	if err := b.DeleteServer("b", "x"); err == nil || !strings.Contains(err.Error(), "No such server") {
		t.Errorf("DeleteServer after a failing queue = %v, want the queue's error", err)
	}
	if err := b.Flush(); err != nil {
		t.Errorf("Flush of an empty queue = %v", err)
	}
}

package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReregisterWhileDraining: a member unregistered while it serves a slow request drains
// (maintenance until the request ends); registered again meanwhile, it is applied by a reload
// (haproxy 2.6 cannot re-add a server that still exists). After that reload the member must
// be served: the server-state file carried into the new worker must not keep it in the
// maintenance the drain put it in.
func TestReregisterWhileDraining(t *testing.T) {
	front, memberPort := freePort(t), freePort(t)
	l := startLB(t, "services:\n"+service("web", front, memberPort, ""))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.71:%d", memberPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
		w.Write([]byte("m"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", front)
	l.must("PUT", "/v1/services/web/members/m", map[string]any{"address": "127.0.0.71"}, http.StatusOK)
	backendName := "web_" + itoa(front)
	slot := slotOf(t, filepath.Join(l.dir, "haproxy.cfg"), backendName, "m")
	if slot == "" {
		t.Fatalf("member m holds no slot of %s", backendName)
	}

	slow := make(chan error, 1)
	go func() {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			slow <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n")
		_, err = c.Read(make([]byte, 512))
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the slow request is at the member
	l.must("DELETE", "/v1/services/web/members/m?wait=false", nil, http.StatusAccepted)
	waitFor(t, 5*time.Second, "m's slot to be in maintenance (draining)", func() bool {
		st, err := strconv.Atoi(serverAdminState(l, backendName, slot))
		return err == nil && st&1 == 1 // SRV_ADMF_FMAINT (0x04: the slot was rendered disabled)
	})
	l.must("PUT", "/v1/services/web/members/m", map[string]any{"address": "127.0.0.71"}, http.StatusOK)
	if err := <-slow; err != nil {
		t.Errorf("the slow request in flight during the drain: %v", err)
	}
	got := map[string]int{}
	for i := range 10 {
		code, body, err := probeOnce(addr, net.IPv4(127, 0, 9, byte(1+i)))
		got[fmt.Sprintf("%d %s %v", code, body, err)]++
	}
	if got["200 m <nil>"] != 10 {
		t.Errorf("after registering m again while it drained, 10 requests got %v, want all 200 from m (admin state %s)",
			got, serverAdminState(l, backendName, slotOf(t, filepath.Join(l.dir, "haproxy.cfg"), backendName, "m")))
	}
}

// serverAdminState is srv_admin_state of a server in `show servers state` ("" if absent).
func serverAdminState(l *lb, backend, server string) string {
	for _, line := range strings.Split(l.haproxy("show servers state "+backend), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[1] == backend && f[3] == server {
			return f[6]
		}
	}
	return ""
}

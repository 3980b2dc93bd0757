package agent

import (
	"context"
	"testing"
	"time"

	"clb/internal/auth"
	"clb/register"
)

// TestKeepaliveReportsCPU: clb_register's keepalive renewals carry the machine's CPU use,
// which clbd keeps by member for Auto Scaling's CPUUtilization.
func TestKeepaliveReportsCPU(t *testing.T) {
	base, a := testAgent(t)
	c := &register.Client{Server: base, Key: auth.DeriveKey([]byte(testPassword)), Timeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Keepalive(ctx, "web", register.Request{Name: "cpu1", Address: "127.0.0.2", Port: 9, TTL: 6 * time.Second}, nil)
		done <- err
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Keepalive: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Keepalive did not end within 15s of its cancel")
		}
	}()
	// Renewals every 2 s (a third of the TTL); the first carries the CPU use since the start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, ok := a.cpu.CPU()["cpu1"]
		if ok {
			if r.Percent < 0 || r.Percent > 100 || time.Since(r.At) > 10*time.Second {
				t.Fatalf("CPU report %+v: want a percentage reported just now", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no CPU report from the keepalive within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package haproxy

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseShowProc(t *testing.T) {
	const v = "2.6.12-1+deb12u4"
	tests := []struct {
		file string
		want []Proc
	}{
		{"show-proc-fresh.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Uptime: time.Second, Version: v},
			{PID: 3296, Type: "worker", Name: "worker", Version: v},
		}},
		{"show-proc-reloaded.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Reloads: 1, Uptime: 4 * time.Second, Version: v},
			{PID: 3497, Type: "worker", Name: "worker", Uptime: time.Second, Version: v},
		}},
		{"show-proc-running.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Reloads: 4, Uptime: 20 * time.Second, Version: v},
			{PID: 4458, Type: "worker", Name: "worker", Uptime: 5 * time.Second, Version: v},
		}},
		// After a reload with a broken config the old worker stays; its
		// reload count grows, and so does the master's failed count.
		{"show-proc-reload-failed.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Reloads: 5, Failed: 1, Uptime: 20 * time.Second, Version: v},
			{PID: 4458, Type: "worker", Name: "worker", Reloads: 1, Uptime: 5 * time.Second, Version: v},
		}},
		{"show-proc-reload-failed-twice.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Reloads: 6, Failed: 2, Uptime: 21 * time.Second, Version: v},
			{PID: 4458, Type: "worker", Name: "worker", Reloads: 2, Uptime: 6 * time.Second, Version: v},
		}},
		{"show-proc-old-worker.txt", []Proc{
			{PID: 3293, Type: "master", Name: "master", Reloads: 4, Uptime: 15 * time.Second, Version: v},
			{PID: 4458, Type: "worker", Name: "worker", Version: v},
			{PID: 3846, Type: "worker", Name: "worker", Reloads: 1, Uptime: 10 * time.Second, Version: v, Old: true},
		}},
		{"show-proc-program.txt", []Proc{
			{PID: 5279, Type: "master", Name: "master", Version: v},
			{PID: 5283, Type: "worker", Name: "worker", Version: v},
			{PID: 5282, Type: "program", Name: "sleeper"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseShowProc(string(b))
			if err != nil {
				t.Fatalf("ParseShowProc: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseShowProc:\ngot  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseShowProcErrors(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"empty", "", "no master"},
		{"unknown command", "Unknown command: 'show prox'\n", "want at least 5 fields"},
		{"no master", "# workers\n3296            worker          0               0d00h00m00s     2.6.12\n", "no master"},
		{"bad pid", "x master 0 [failed: 0] 0d00h00m01s 2.6\n", "bad pid"},
		{"bad failed", "1 master 0 [failed: x] 0d00h00m01s 2.6\n", "bad failed count"},
		{"bad uptime", "1 master 0 [failed: 0] 1h 2.6\n", "bad uptime"},
		{"extra field", "1 master 0 [failed: 0] 0d00h00m01s 2.6 extra\n", "want uptime and version"},
	}
	for _, tt := range tests {
		_, err := ParseShowProc(tt.out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseShowProc = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

// fakeMaster serves one connection like the 2.6 master CLI: it answers
// only once the client has half-closed.
func fakeMaster(t *testing.T, sock string, delay time.Duration, answer func(cmd string) string) <-chan string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		time.Sleep(delay)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c) // returns at the client's CloseWrite
		if err != nil {
			t.Error(err)
		}
		got <- string(b)
		io.WriteString(c, answer(string(b)))
	}()
	return got
}

func TestMasterCommand(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "m.sock")
	got := fakeMaster(t, sock, 0, func(string) string { return "answer\n" })
	out, err := MasterCommand(context.Background(), sock, "show proc")
	if err != nil {
		t.Fatal(err)
	}
	if out != "answer\n" {
		t.Errorf("MasterCommand = %q, want %q", out, "answer\n")
	}
	if cmd := <-got; cmd != "show proc\n" {
		t.Errorf("master received %q, want %q", cmd, "show proc\n")
	}
}

func TestMasterCommandRetriesDial(t *testing.T) {
	// The master refuses connections for ~100 ms while it reloads.
	sock := filepath.Join(shortTempDir(t), "m.sock")
	fakeMaster(t, sock, 300*time.Millisecond, func(string) string { return "late\n" })
	out, err := MasterCommand(context.Background(), sock, "show proc")
	if err != nil || out != "late\n" {
		t.Errorf("MasterCommand = %q, %v; want %q", out, err, "late\n")
	}
}

func TestMasterCommandErrors(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "none.sock")
	start := time.Now()
	if _, err := MasterCommand(context.Background(), sock, "show proc"); err == nil {
		t.Error("MasterCommand(no socket) = nil error")
	}
	if d := time.Since(start); d < dialRetryFor || d > dialRetryFor+3*time.Second {
		t.Errorf("MasterCommand(no socket) gave up after %v, want about %v", d, dialRetryFor)
	}
	if _, err := MasterCommand(context.Background(), sock, "show proc\nreload"); err == nil {
		t.Error("MasterCommand(two lines) = nil error")
	}

	// A master that never answers: the deadline ends the wait.
	sock = filepath.Join(shortTempDir(t), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := MasterCommand(ctx, sock, "show proc"); err == nil {
		t.Error("MasterCommand(mute master) = nil error")
	}
}

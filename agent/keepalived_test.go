//go:build linux

package agent_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"clb/internal/testutil"
)

// TestKeepalivedFailover runs the shipped high-availability example for real: two load
// balancers (clbd managed, haproxy, keepalived with cloud-init/keepalived/lb-ha.yaml's
// keepalived.conf and check_clb.sh) and a member that is also the client, each host in a
// network namespace of its own on one bridge. The virtual address is served by the preferred
// node; when its clbd dies the health script fails and the other node takes the address; when
// clbd is back the preferred node takes it back. Which node served a request is what the
// member saw as the source address of haproxy's connection.
func TestKeepalivedFailover(t *testing.T) {
	testutil.RequireNetns(t, "keepalived", "curl")
	requireHaproxyBin(t)
	t.Parallel()
	lab := testutil.NewLab(t, "a", "b", "m")
	vip := testutil.LabNet + "100"

	// The member: answers with the address haproxy connected from.
	ln, err := lab.Listen("m", "tcp", lab.Addr("m")+":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		io.WriteString(w, host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	certPath, keyPath, cert, _ := testutil.TestCert(t, dir, "api", false, nil, nil)
	sum := sha256.Sum256(cert.Raw)
	pin := "sha256:" + hex.EncodeToString(sum[:])
	pwFile := filepath.Join(dir, "member-password")
	writeFile(t, pwFile, "ha-test-password\n", 0o600)

	lbYAML := readFile(t, filepath.Join(repoRoot(t), "cloud-init", "lb-server.yaml"))
	haYAML := readFile(t, filepath.Join(repoRoot(t), "cloud-init", "keepalived", "lb-ha.yaml"))
	check := writeFileContent(t, haYAML, "/etc/keepalived/check_clb.sh")
	if want := string(readFile(t, filepath.Join(repoRoot(t), "cloud-init", "keepalived", "check_clb.sh"))); check != want {
		t.Errorf("lb-ha.yaml's check_clb.sh differs from cloud-init/keepalived/check_clb.sh")
	}
	// keepalived runs scripts only from paths no other user can write: not under /tmp.
	scripts, err := os.MkdirTemp("/run", "clb-ha-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scripts) })
	os.Chmod(scripts, 0o755)
	writeFile(t, filepath.Join(scripts, "check_clb.sh"), check, 0o755)

	nodes := map[string]*haNode{}
	for _, n := range []struct{ host, peer, prio string }{{"a", "b", "150"}, {"b", "a", "100"}} {
		nd := &haNode{t: t, lab: lab, host: n.host, dir: filepath.Join(dir, n.host)}
		os.MkdirAll(nd.dir, 0o750)
		writeFile(t, filepath.Join(nd.dir, "password"), "ha-test-password\n", 0o600)
		vars := map[string]string{
			"CLB_SERVICE": "web", "CLB_VIP": vip + "/24", "CLB_VRRP_INTERFACE": "eth0",
			"CLB_VRRP_PRIORITY": n.prio, "CLB_VRRP_ROUTER_ID": "51", "CLB_VRRP_PASSWORD": "clbtest",
			"CLB_VRRP_PEER": lab.Addr(n.peer),
		}
		clbdYAML := os.Expand(writeFileContent(t, lbYAML, "/etc/clb/clbd.yaml"), func(k string) string { return vars[k] })
		clbdYAML = strings.NewReplacer("/etc/clb/api.crt", certPath, "/var/lib/clb-server/api.key", keyPath).Replace(clbdYAML)
		writeFile(t, filepath.Join(nd.dir, "clbd.yaml"), clbdYAML, 0o644)
		kaConf := os.Expand(writeFileContent(t, haYAML, "/etc/keepalived/keepalived.conf"), func(k string) string { return vars[k] })
		kaConf = strings.ReplaceAll(kaConf, "/etc/keepalived/check_clb.sh", filepath.Join(scripts, "check_clb.sh"))
		writeFile(t, filepath.Join(nd.dir, "keepalived.conf"), kaConf, 0o644)
		nd.startClbd()
		nodes[n.host] = nd
		mustRunIn(t, lab, "m", "clb_register", "--server", "https://"+lab.Addr(n.host)+":8090", "--pin", pin,
			"--password-file", pwFile, "--service", "web", "--name", "m1", "--address", lab.Addr("m"), "--port", "80")
	}
	for _, h := range []string{"a", "b"} {
		nodes[h].startKeepalived()
	}

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: lab.Dial("m"), DisableKeepAlives: true}}
	via := func() string {
		resp, err := client.Get("http://" + vip + "/")
		if err != nil {
			return "ERR"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprint(resp.StatusCode)
		}
		return string(b)
	}
	// servedVia waits (bounded) until requests to the virtual address reach the member through
	// node h, and logs what the requests on the way got.
	servedVia := func(h, why string) {
		t.Helper()
		seen := map[string]int{}
		start := time.Now()
		for stable := 0; stable < 5; {
			if time.Since(start) > 45*time.Second {
				t.Fatalf("%s: not served through %s (%s) within 45s; requests got %v\nkeepalived a:\n%s\nkeepalived b:\n%s",
					why, h, lab.Addr(h), seen, nodes["a"].kaLogs.String(), nodes["b"].kaLogs.String())
			}
			got := via()
			seen[got]++
			if got == lab.Addr(h) {
				stable++
			} else {
				stable = 0
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s: served through %s after %s; requests on the way: %v", why, h, time.Since(start).Round(100*time.Millisecond), seen)
	}

	servedVia("a", "start, a preferred")
	// clbd on a dies (its haproxy keeps serving, by design): the check fails, b takes over.
	nodes["a"].clbd.Process.Signal(syscall.SIGKILL)
	nodes["a"].clbd.Wait()
	servedVia("b", "clbd on a killed")
	if !strings.Contains(nodes["a"].kaLogs.String(), "chk_clb") {
		t.Errorf("keepalived on a never mentions the chk_clb script:\n%s", nodes["a"].kaLogs.String())
	}
	// clbd on a is back (and adopts its haproxy): a takes the address back.
	nodes["a"].startClbd()
	servedVia("a", "clbd on a restarted")
}

// haNode is one load balancer of TestKeepalivedFailover.
type haNode struct {
	t      *testing.T
	lab    *testutil.Lab
	host   string
	dir    string
	clbd   *exec.Cmd
	logs   testutil.SyncBuffer
	kaLogs testutil.SyncBuffer
}

// startClbd runs clbd as the clb-server unit does, and waits for /healthz inside the node.
func (n *haNode) startClbd() {
	n.t.Helper()
	n.clbd = n.lab.Command(n.host, binary(n.t, "clbd"), "--managed", "--config", filepath.Join(n.dir, "clbd.yaml"), "--state-dir", n.dir)
	n.clbd.Stdout, n.clbd.Stderr = &n.logs, &n.logs
	if err := n.clbd.Start(); err != nil {
		n.t.Fatal(err)
	}
	cmd := n.clbd
	n.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if n.t.Failed() {
			n.t.Logf("clbd on %s:\n%s", n.host, n.logs.String())
		}
	})
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: n.lab.Dial(n.host),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitFor(n.t, 20*time.Second, "clbd on "+n.host+" to answer /healthz", func() bool {
		resp, err := c.Get("https://127.0.0.1:8090/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (n *haNode) startKeepalived() {
	n.t.Helper()
	pid := func(s string) string { return filepath.Join(n.dir, s+".pid") }
	cmd := n.lab.Command(n.host, "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"--use-file", filepath.Join(n.dir, "keepalived.conf"), "--pid", pid("keepalived"), "--vrrp_pid", pid("vrrp"), "--checkers_pid", pid("checkers"))
	cmd.Stdout, cmd.Stderr = &n.kaLogs, &n.kaLogs
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
}

// mustRunIn runs one of the module's commands inside host h of the lab; it must exit 0.
func mustRunIn(t *testing.T, lab *testutil.Lab, h, name string, args ...string) {
	t.Helper()
	inHost := func(ctx context.Context, path string, args ...string) *exec.Cmd {
		return lab.CommandContext(ctx, h, path, args...)
	}
	if code, out := runWith(t, inHost, name, args...); code != 0 {
		t.Fatalf("%s in %s: exit %d: %s", name, h, code, out)
	}
}

// writeFileContent returns the content of the write_files entry for path in a cloud-config.
func writeFileContent(t *testing.T, cloudConfig []byte, path string) string {
	t.Helper()
	var cc struct {
		WriteFiles []struct {
			Path    string `yaml:"path"`
			Content string `yaml:"content"`
		} `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(cloudConfig, &cc); err != nil {
		t.Fatal(err)
	}
	for _, f := range cc.WriteFiles {
		if f.Path == path {
			return f.Content
		}
	}
	t.Fatalf("no write_files entry for %s", path)
	return ""
}

// repoRoot is the module's root directory (the tests run in agent/).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"clb/internal/etcdtest"
	"clb/internal/model"
	"clb/internal/store"
)

// Several clbd nodes on one etcd: each node is a managed clbd with its own haproxy (its own
// frontend port for service web), all sharing one membership. Backends b1..b3 listen on
// 127.0.0.1..3 as in the single-node scenarios.

const fleetPassword = "correct horse battery staple"

type fleet struct {
	t     testing.TB
	etcd  *etcdtest.Cluster
	nodes []*lbNode
	ports map[string]int
	pw    string // password file, the same on every node
	keys  string
}

// lbNode is one load balancer: clbd + its haproxy.
type lbNode struct {
	name  string
	dir   string
	front string // http://127.0.0.1:PORT/ of service web on this node
	c     *clbd
}

// storeYAML is the store section of the nodes' config.
func storeYAML(endpoints []string) string {
	return "store:\n  type: etcd\n  endpoints: [" + strings.Join(endpoints, ", ") + "]\n  prefix: /clb-test/\n  dial_timeout: 1s\n"
}

// newFleet starts n clbd nodes on the etcd cluster c. extra is appended to each node's config
// after web's listeners (two-space lines define more services; they get the node's index in
// %[1]d if they need distinct ports).
func newFleet(t testing.TB, c *etcdtest.Cluster, n int, extra func(i int) string) *fleet {
	requireHaproxyBin(t)
	f := &fleet{t: t, etcd: c, ports: map[string]int{}}
	shared := shortDir(t)
	f.pw = filepath.Join(shared, "password")
	writeFile(t, f.pw, fleetPassword+"\n", 0o600)
	f.keys = filepath.Join(shared, "keys.yaml")
	writeFile(t, f.keys, "keys:\n  - id: admin\n    secret: "+adminSecret+"\n    scope: admin\n", 0o600)
	for _, b := range []string{"b1", "b2", "b3"} {
		f.ports[b] = freePort(t)
		backend(t, b, f.addr(b))
	}
	memberPort := f.ports["b1"]
	var wg sync.WaitGroup
	f.nodes = make([]*lbNode, n)
	for i := range n {
		nd := &lbNode{name: string(rune('A' + i)), dir: shortDir(t)}
		front := freePort(t)
		nd.front = fmt.Sprintf("http://127.0.0.1:%d/", front)
		more := ""
		if extra != nil {
			more = extra(i)
		}
		cfg := webConfig(front, memberPort, more) + "lease_min_ttl: 1s\n" + storeYAML(c.Endpoints())
		cfgPath := filepath.Join(nd.dir, "clbd.yaml")
		writeFile(t, cfgPath, cfg, 0o644)
		// The same password on every node, where the harness looks for it.
		writeFile(t, filepath.Join(nd.dir, "password"), fleetPassword+"\n", 0o600)
		f.nodes[i] = nd
		wg.Go(func() {
			nd.c = startClbd(t, nd.dir, "--config", cfgPath, "--state-dir", nd.dir, "--templates", filepath.Join(nd.dir, "templates"),
				"--password-file", filepath.Join(nd.dir, "password"), "--keys-file", f.keys, "--managed")
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return f
}

func (f *fleet) addr(b string) string { return fmt.Sprintf("127.0.0.%s:%d", b[1:], f.ports[b]) }

// register registers backend b through node nd with clb_register (exit 0 = applied on nd).
func (f *fleet) register(nd *lbNode, b string, extra ...string) {
	f.t.Helper()
	args := append([]string{"--server", "http://" + nd.c.api, "--password-file", f.pw, "--service", "web",
		"--name", b, "--address", "127.0.0." + b[1:], "--port", itoa(f.ports[b])}, extra...)
	mustRun(f.t, "clb_register", args...)
}

func (f *fleet) unregister(nd *lbNode, b string) {
	f.t.Helper()
	mustRun(f.t, "clb_unregister", "--server", "http://"+nd.c.api, "--password-file", f.pw, "--service", "web", "--name", b)
}

// served checks (once) that requests to front reach exactly names.
func served(t testing.TB, front string, names ...string) bool {
	got := spread(t, front, 4*len(names)+2)
	if len(got) != len(names) {
		return false
	}
	for _, n := range names {
		if got[n] == 0 {
			return false
		}
	}
	return true
}

// converge waits until every node's haproxy serves exactly names.
func (f *fleet) converge(what string, names ...string) {
	f.t.Helper()
	f.convergeOn(f.nodes, what, names...)
}

func (f *fleet) convergeOn(nodes []*lbNode, what string, names ...string) {
	f.t.Helper()
	for _, nd := range nodes {
		waitFor(f.t, 15*time.Second, fmt.Sprintf("node %s to serve %v (%s)", nd.name, names, what), func() bool { return served(f.t, nd.front, names...) })
	}
}

func storeStatus(st map[string]any) map[string]any {
	s, _ := st["store"].(map[string]any)
	return s
}

func reloads(nd *lbNode) float64 { return nd.c.status()["reloads"].(float64) }

func metricsText(t testing.TB, nd *lbNode) string {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + nd.c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestEtcdFleet: three load balancers on a three-member etcd cluster.
func TestEtcdFleet(t *testing.T) {
	c := etcdtest.Start(t, 3)
	f := newFleet(t, c, 3, nil)
	A, B, C := f.nodes[0], f.nodes[1], f.nodes[2]

	// Register via A: applied on A when clb_register exits, on B and C through their watch.
	f.register(A, "b1")
	if !served(t, A.front, "b1") {
		t.Fatalf("A does not serve b1 right after clb_register exited 0")
	}
	f.converge("registered via A", "b1")
	f.register(B, "b2")
	f.converge("registered via B", "b1", "b2")
	// Unregister via C: drained everywhere.
	f.unregister(C, "b2")
	if !served(t, C.front, "b1") {
		t.Errorf("C still serves b2 right after clb_unregister exited 0")
	}
	f.converge("unregistered via C", "b1")
	for _, nd := range f.nodes {
		if st := nd.c.status(); st["reloads"].(float64) != 0 || storeStatus(st)["type"] != "etcd" || storeStatus(st)["available"] != true {
			t.Errorf("node %s: reloads %v (want 0: membership goes through the runtime API), store %v", nd.name, st["reloads"], storeStatus(st))
		}
	}

	// keepalived's health check passes on a node whose clbd and haproxy answer.
	if code, out := checkClb(t, A); code != 0 {
		t.Errorf("check_clb.sh on node A: exit %d: %s", code, out)
	}

	// A service defined through A's admin API is in etcd: B serves its listener too.
	apiPort := freePort(t)
	code, out := A.c.callAs("admin", "PUT", "/v1/services/api", adminSecret, map[string]any{
		"listeners": []map[string]any{{"port": apiPort, "address": "127.0.0.1", "member_port": f.ports["b3"]}}})
	if code != http.StatusOK {
		t.Fatalf("PUT /v1/services/api via A = %d %v", code, out)
	}
	waitFor(t, 15*time.Second, "B to know service api", func() bool {
		code, _ := B.c.call("GET", "/v1/services/api", fleetPassword, nil)
		return code == http.StatusOK
	})
	code, out = B.c.call("PUT", "/v1/services/api/members/b3", fleetPassword, map[string]any{"address": "127.0.0.3", "port": f.ports["b3"]})
	if code != http.StatusOK {
		t.Fatalf("register into api via B = %d %v", code, out)
	}
	// Every node reloads once for the new listener (its haproxy binds the shared port with
	// SO_REUSEPORT), and has b3 in service api.
	before := map[string]float64{}
	for _, nd := range f.nodes {
		waitFor(t, 15*time.Second, "node "+nd.name+" to serve service api with b3", func() bool {
			code, out := nd.c.call("GET", "/v1/services/api", fleetPassword, nil)
			ms, _ := out["members"].([]any)
			return code == http.StatusOK && len(ms) == 1 && reloads(nd) == 1 && nd.c.status()["pending_changes"].(float64) == 0
		})
		before[nd.name] = reloads(nd)
	}
	waitFor(t, 15*time.Second, "b3 served on service api", func() bool {
		return spread(t, fmt.Sprintf("http://127.0.0.1:%d/", apiPort), 2)["b3"] == 2
	})

	// A lease registered through A, then A killed: B and C go on, A's haproxy too; etcd
	// expires the lease although the clbd that took it is gone.
	f.register(A, "b3", "--ttl", "2s")
	f.converge("lease b3 registered via A", "b1", "b3")
	A.c.stop(syscall.SIGKILL)
	if code, out := checkClb(t, A); code != 1 || !strings.Contains(out, "clbd does not answer") {
		t.Errorf("check_clb.sh on node A with clbd killed: exit %d: %s; want 1 (keepalived moves the address)", code, out)
	}
	stopB, stopC := loadNames(B.front), loadNames(C.front)
	if got := spread(t, A.front, 10); got["b1"] == 0 || got["ERR"] > 0 {
		t.Errorf("A's haproxy with its clbd killed: %v; want b1 (and b3) served", got)
	}
	f.convergeOn([]*lbNode{B, C}, "lease of b3 expired with A dead", "b1")
	for name, stop := range map[string]func() (int64, int64, map[string]int){"B": stopB, "C": stopC} {
		if total, failed, _ := stop(); failed != 0 || total == 0 {
			t.Errorf("node %s while A was killed: %d of %d requests failed", name, failed, total)
		}
	}
	// clb_register with two servers, the first dead: the second applies it.
	mustRun(t, "clb_register", "--server", "http://"+A.c.api+",http://"+B.c.api, "--password-file", f.pw, "--service", "web",
		"--name", "b2", "--address", "127.0.0.2", "--port", itoa(f.ports["b2"]))
	f.convergeOn([]*lbNode{B, C}, "b2 registered via A,B with A dead", "b1", "b2")
	// A restarts and resumes from etcd (its haproxy had kept serving, b3 included, since no
	// clbd was there to remove it).
	A.c.start()
	waitFor(t, 15*time.Second, "restarted A to catch up with etcd", func() bool { return served(t, A.front, "b1", "b2") })

	// One etcd member of three stopped: nothing changes.
	c.Members[0].Stop()
	f.unregister(C, "b2")
	f.converge("unregistered via C with an etcd member down", "b1")
	f.register(B, "b2")
	f.converge("registered via B with an etcd member down", "b1", "b2")

	// etcd entirely stopped: every haproxy keeps serving, registrations get 503.
	// (A load runs on every node meanwhile: a check there would interleave with it in
	// haproxy's round robin, so what was served is read from the load itself.)
	var stops []func() (int64, int64, map[string]int)
	for _, nd := range f.nodes {
		stops = append(stops, loadNames(nd.front))
	}
	c.Stop()
	for _, nd := range f.nodes {
		waitFor(t, 15*time.Second, "node "+nd.name+" to report etcd unavailable", func() bool {
			return storeStatus(nd.c.status())["available"] == false
		})
		if m := metricsText(t, nd); !strings.Contains(m, `clb_store_available{type="etcd"} 0`) {
			t.Errorf("node %s metrics during the outage lack clb_store_available 0", nd.name)
		}
	}
	start := time.Now()
	code, out = B.c.call("PUT", "/v1/services/web/members/b3", fleetPassword, map[string]any{"address": "127.0.0.3", "port": f.ports["b3"]})
	if code != http.StatusServiceUnavailable || out["code"] != "store_unavailable" || !strings.Contains(fmt.Sprint(out["error"]), "etcd") {
		t.Errorf("register during the outage = %d %v; want 503 store_unavailable naming etcd", code, out)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("register during the outage took %s; want a fast failure", d)
	}
	rc, rout := run(t, "clb_register", "--server", "http://"+C.c.api, "--password-file", f.pw, "--service", "web", "--name", "b3",
		"--address", "127.0.0.3", "--port", itoa(f.ports["b3"]), "--timeout", "1s")
	if rc != 69 || !strings.Contains(rout, "store_unavailable") {
		t.Errorf("clb_register during the outage: exit %d, %q; want 69 and store_unavailable", rc, rout)
	}

	// B restarts in place (SIGHUP: re-exec, haproxy adopted) while etcd is down: it cannot
	// read the membership, so it renders nothing and haproxy keeps what it runs.
	B.c.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 20*time.Second, "B to come back without etcd", func() bool {
		st, ok := tryStatus(B)
		return ok && storeStatus(st)["synced"] == false
	})
	for i, stop := range stops {
		if total, failed, names := stop(); failed != 0 || total == 0 || len(names) != 2 || names["b1"] == 0 || names["b2"] == 0 {
			t.Errorf("node %s during the etcd outage (B restarted): %d of %d requests failed, served %v; want none failed, b1 and b2 served",
				f.nodes[i].name, failed, total, names)
		}
	}

	// etcd back: every node reads afresh, without a drain or a reload, and converges.
	for i, nd := range f.nodes {
		stops[i] = loadNames(nd.front)
	}
	c.Restart()
	for _, nd := range f.nodes {
		waitFor(t, 20*time.Second, "node "+nd.name+" to report etcd available again", func() bool {
			st := storeStatus(nd.c.status())
			return st["available"] == true && st["synced"] == true
		})
	}
	for i, stop := range stops {
		if total, failed, names := stop(); failed != 0 || total == 0 || len(names) != 2 || names["b1"] == 0 || names["b2"] == 0 {
			t.Errorf("node %s as etcd came back: %d of %d requests failed, served %v; want none failed, b1 and b2 served",
				f.nodes[i].name, failed, total, names)
		}
	}
	if got := reloads(C); got != before["C"] {
		t.Errorf("node C reloaded haproxy %v times across the outage and resync, want 0", got-before["C"])
	}
	if got := reloads(B); got != 0 { // a new process: its count starts at 0
		t.Errorf("node B, restarted during the outage, reloaded haproxy %v times since, want 0 (same membership)", got)
	}
	f.register(A, "b3")
	f.converge("registered via A after the outage", "b1", "b2", "b3")
}

// TestEtcdConcurrentRegistrations: 300 registrations at once, spread over three nodes: every
// node has all 300, once each.
func TestEtcdConcurrentRegistrations(t *testing.T) {
	c := etcdtest.Start(t, 1)
	bulkPorts := []int{freePort(t), freePort(t), freePort(t)}
	f := newFleet(t, c, 3, func(i int) string {
		return fmt.Sprintf("  bulk:\n    listeners:\n      - port: %d\n        address: 127.0.0.1\n        member_port: 9\n", bulkPorts[i])
	})
	const n = 300
	var wg sync.WaitGroup
	codes := make([]int, n)
	var retried atomic.Int64
	for i := range n {
		nd := f.nodes[i%len(f.nodes)]
		wg.Go(func() {
			// A 503 (etcd too slow for one call on a busy machine) is retried, as clb_register
			// does: the PUT is idempotent.
			for try := range 3 {
				codes[i], _ = nd.c.call("PUT", fmt.Sprintf("/v1/services/bulk/members/m%03d", i), fleetPassword,
					map[string]any{"address": fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250), "port": 9})
				if codes[i] != http.StatusServiceUnavailable || try == 2 {
					break
				}
				retried.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d registrations retried after a 503", retried.Load())
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("registration %d via node %s: %d, want 200", i, f.nodes[i%3].name, code)
		}
	}
	for _, nd := range f.nodes {
		cfgPath := filepath.Join(nd.dir, "haproxy.cfg")
		waitFor(t, 20*time.Second, "node "+nd.name+" to have all 300 members in haproxy.cfg", func() bool {
			b, err := os.ReadFile(cfgPath)
			return err == nil && strings.Count(string(b), " # m") == n
		})
		code, out := nd.c.call("GET", "/v1/services/bulk", fleetPassword, nil)
		members, _ := out["members"].([]any)
		seen := map[string]bool{}
		for _, m := range members {
			seen[m.(map[string]any)["name"].(string)] = true
		}
		if code != http.StatusOK || len(members) != n || len(seen) != n {
			t.Errorf("node %s: GET bulk = %d with %d members (%d distinct), want %d", nd.name, code, len(members), len(seen), n)
		}
	}
	resp, err := c.Client().Get(context.Background(), "/clb-test/members/bulk/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != n {
		t.Errorf("etcd holds %v bulk members (%v), want %d", resp.Count, err, n)
	}
}

// TestStoreMigrate: clbd store migrate copies a local state dir (members, a lease, services
// defined through the API, disabled zones) into etcd, idempotently; clbd render reads etcd.
func TestStoreMigrate(t *testing.T) {
	c := etcdtest.Start(t, 1)
	old := t.TempDir()
	st, err := store.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"m1", "m2"} {
		if _, err := st.Put("web", model.Member{Name: name, Address: "127.0.0.1", Port: 8001 + i, Weight: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.PutLease("web", model.Member{Name: "l1", Address: "127.0.0.1", Port: 8100, Weight: 50}, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	// With a health check: a pointer, which migrate once compared by address (fmt.Sprint), so
	// that every re-run reported identical services as different.
	writeFile(t, filepath.Join(old, "definitions.yaml"), "services:\n  api:\n    listeners:\n      - port: 9443\n        member_port: 8443\n    health_check:\n      target: HTTP:8443/health\ndisabled_zones:\n  web: [z2]\n", 0o640)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "clbd.yaml")
	writeFile(t, cfgPath, webConfig(18080, 8000, "")+storeYAML(c.Endpoints()), 0o644)

	out := mustRun(t, "clbd", "store", "migrate", "--config", cfgPath, "--from", old)
	if !strings.Contains(out, "members: 3 written, 0 already in etcd") || !strings.Contains(out, "definitions: 1 services") {
		t.Errorf("first migrate printed %q", out)
	}
	out = mustRun(t, "clbd", "store", "migrate", "--config", cfgPath, "--from", old)
	if !strings.Contains(out, "members: 0 written, 3 already in etcd") || strings.Contains(out, "defines it differently") {
		t.Errorf("second migrate printed %q, want nothing written and no service reported different", out)
	}
	// A service etcd really defines otherwise is reported, and etcd's kept.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "state.json"), string(readFile(t, filepath.Join(old, "state.json"))), 0o640)
	writeFile(t, filepath.Join(other, "definitions.yaml"), "services:\n  api:\n    listeners:\n      - port: 9444\n", 0o640)
	if out := mustRun(t, "clbd", "store", "migrate", "--config", cfgPath, "--from", other); !strings.Contains(out, "service api: etcd defines it differently") {
		t.Errorf("migrate of a different api printed %q, want it reported", out)
	}
	cli := c.Client()
	resp, err := cli.Get(context.Background(), "/clb-test/members/web/l1")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("l1 in etcd: %v %v; want a key with an etcd lease", resp, err)
	}
	ttl, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 60 {
		t.Errorf("lease of l1: %v %v, want granted TTL 60", ttl, err)
	}
	defs, err := cli.Get(context.Background(), "/clb-test/definitions")
	if err != nil || len(defs.Kvs) != 1 || !strings.Contains(string(defs.Kvs[0].Value), "9443") || !strings.Contains(string(defs.Kvs[0].Value), "z2") {
		t.Errorf("definitions in etcd: %v %v", defs, err)
	}
	rendered := mustRun(t, "clbd", "render", "--config", cfgPath, "--state-dir", dir)
	for _, m := range []string{" 127.0.0.1:8001 weight 100 # m1", " 127.0.0.1:8002 weight 100 # m2", " 127.0.0.1:8100 weight 50 # l1"} {
		if !strings.Contains(rendered, m) {
			t.Errorf("clbd render on etcd lacks %q", m)
		}
	}
	if code, out := run(t, "clbd", "store", "migrate", "--config", cfgPath, "--from", t.TempDir()); code == 0 {
		t.Errorf("migrate from an empty dir: exit 0: %s", out)
	}
}

// checkClb runs the keepalived health check shipped in cloud-init/keepalived against a node.
func checkClb(t testing.TB, nd *lbNode) (int, string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; make deps installs it")
		}
		t.Skip("curl is not installed")
	}
	cmd := exec.Command("../cloud-init/keepalived/check_clb.sh", "http://"+nd.c.api, nd.front, "2")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestKeepalivedExample: the check script embedded in lb-ha.yaml is check_clb.sh, byte for
// byte (indented as YAML block content), so the tested script is the shipped one.
func TestKeepalivedExample(t *testing.T) {
	script := string(readFile(t, "../cloud-init/keepalived/check_clb.sh"))
	yaml := string(readFile(t, "../cloud-init/keepalived/lb-ha.yaml"))
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		if l != "" {
			b.WriteString("      " + l)
		}
		b.WriteString("\n")
	}
	if !strings.Contains(yaml, "    content: |\n"+b.String()) {
		t.Error("cloud-init/keepalived/lb-ha.yaml does not embed check_clb.sh as it is: copy it again")
	}
	for _, want := range []string{"weight -60", "track_script", "type: etcd", "append: true", "merge_how"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("lb-ha.yaml lacks %q", want)
		}
	}
}

// tryStatus is GET /v1/status that tolerates a clbd not answering yet.
func tryStatus(nd *lbNode) (map[string]any, bool) {
	resp, err := noKeepAlive.Do(nd.c.signed("GET", "/v1/status", fleetPassword, nil))
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var st map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil, false
	}
	return st, true
}

// loadNames is load (one request at a time, new connection each, until stop) that also
// counts which backends answered.
func loadNames(url string) (stop func() (total, failed int64, names map[string]int)) {
	var mu sync.Mutex
	names := map[string]int{}
	var total, failed int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			select {
			case <-done:
				return
			default:
			}
			resp, err := noKeepAlive.Get(url)
			mu.Lock()
			total++
			if err != nil {
				failed++
				mu.Unlock()
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed++
			} else {
				names[string(b)]++
			}
			mu.Unlock()
		}
	})
	return func() (int64, int64, map[string]int) {
		close(done)
		wg.Wait()
		return total, failed, names
	}
}

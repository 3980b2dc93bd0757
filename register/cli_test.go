package register

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"clb/internal/auth"
)

const argvWarning = "visible in the process list"

// cliRun runs the CLI in-process with the given environment (nothing else from the real
// one) and a client config path under dir, and fast retries.
type cliRun struct {
	name       string
	unregister bool
	env        map[string]string
	dir        string
	// instanceData is cloud-init's instance data for --instance-id auto.
	instanceData string
}

func (r cliRun) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	name := r.name
	if name == "" {
		name = "clb_register"
		if r.unregister {
			name = "clb_unregister"
		}
	}
	dir := r.dir
	if dir == "" {
		dir = t.TempDir()
	}
	app := newApp(name, r.unregister, appOptions{
		lookupEnv: func(k string) (string, bool) {
			v, ok := r.env[k]
			return v, ok
		},
		tune:         fast,
		clientConfig: filepath.Join(dir, "client.conf"),
		instanceData: r.instanceData,
	})
	var out, errb bytes.Buffer
	code = runApp(context.Background(), app, append([]string{name}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCLIFormsEquivalent runs the 2010 positional form and the flag forms: they must send
// the same request.
func TestCLIFormsEquivalent(t *testing.T) {
	srv := newFakeServer(t, keysFor("s3cret"))
	hp := srv.hostPort()
	dir := t.TempDir()
	pwFile := writeFile(t, dir, "pw", "s3cret\n")
	writeFile(t, dir, "client.conf", "# written by cloud-init\npassword = \"s3cret\"\nserver: "+srv.URL+"\nservice = web\n")
	member := []string{"--address", "10.0.0.5", "--port", "8080"}
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		wantWarning bool
	}{
		{name: "2010 form", args: append(member, "s3cret", hp, "web"), wantWarning: true},
		{name: "2010 form with URL", args: append(member, "s3cret", srv.URL, "web"), wantWarning: true},
		{name: "flags", args: append(member, "--password-file", pwFile, "--server", hp, "--service", "web")},
		{name: "flags with =", args: append(member, "--password-file="+pwFile, "--server="+srv.URL, "--service=web")},
		{name: "two arguments", env: map[string]string{"CLB_PASSWORD": "s3cret"}, args: append(member, hp, "web")},
		{name: "same server twice", args: append(member, "--server", hp, "--password-file", pwFile, hp, "web")},
		{name: "environment", env: map[string]string{"CLB_PASSWORD": "s3cret", "CLB_SERVER": hp, "CLB_SERVICE": "web"}, args: member},
		{name: "client config", args: member},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(srv.Calls())
			code, stdout, stderr := cliRun{env: tt.env, dir: dir}.run(t, tt.args...)
			if code != ExitOK {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			if want := "registered 10.0.0.5:8080 in web (applied)\n"; stdout != want {
				t.Errorf("stdout = %q, want %q", stdout, want)
			}
			if got := strings.Contains(stderr, argvWarning); got != tt.wantWarning {
				t.Errorf("password warning = %v, want %v; stderr:\n%s", got, tt.wantWarning, stderr)
			}
			calls := srv.Calls()[before:]
			if len(calls) != 1 {
				t.Fatalf("server got %d calls, want 1", len(calls))
			}
			got := calls[0].method + " " + calls[0].path + " " + calls[0].body
			if want := `POST /v1/services/web/members {"address":"10.0.0.5","port":8080}`; got != want {
				t.Errorf("request = %s, want %s", got, want)
			}
		})
	}
}

func TestCLIMemberFlags(t *testing.T) {
	tests := []struct {
		name       string
		unregister bool
		args       []string
		wantReq    string
		wantOut    string
	}{
		{
			name:    "named with weight and zone",
			args:    []string{"--name", "web-1", "--address", "10.0.0.5", "--port", "8080", "--weight", "0", "--zone", "eu-1a"},
			wantReq: `PUT /v1/services/web/members/web-1 {"address":"10.0.0.5","port":8080,"weight":0,"zone":"eu-1a"}`,
			wantOut: "registered web-1 (10.0.0.5:8080) in web (applied)",
		},
		{
			name:    "myself",
			wantReq: `POST /v1/services/web/members {}`,
			wantOut: "registered 127.0.0.1:8080 in web (applied)",
		},
		{
			name:    "ipv6",
			args:    []string{"--address", "2001:db8::5", "--port", "80"},
			wantReq: `POST /v1/services/web/members {"address":"2001:db8::5","port":80}`,
			wantOut: "registered [2001:db8::5]:80 in web (applied)",
		},
		{
			name:       "unregister myself",
			unregister: true,
			wantReq:    `DELETE /v1/services/web/members {}`,
			wantOut:    "unregistered 127.0.0.1:8080 from web (applied)",
		},
		{
			name:       "unregister by name ignores weight",
			unregister: true,
			args:       []string{"--name", "web-1", "--weight", "5"},
			wantReq:    `DELETE /v1/services/web/members/web-1 `,
			wantOut:    "unregistered web-1 (127.0.0.1:8080) from web (applied)",
		},
		{
			name:       "unregister address and port",
			unregister: true,
			args:       []string{"--address", "10.0.0.5", "--port", "8080"},
			wantReq:    `DELETE /v1/services/web/members {"address":"10.0.0.5","port":8080}`,
			wantOut:    "unregistered 10.0.0.5:8080 from web (applied)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"))
			env := map[string]string{"CLB_PASSWORD": "pw"}
			code, stdout, stderr := cliRun{unregister: tt.unregister, env: env}.run(t, append(tt.args, srv.hostPort(), "web")...)
			if code != ExitOK {
				t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
			}
			if got := strings.TrimSuffix(stdout, "\n"); got != tt.wantOut {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
			calls := srv.Calls()
			if len(calls) != 1 {
				t.Fatalf("server got %d calls, want 1", len(calls))
			}
			if got := calls[0].method + " " + calls[0].path + " " + calls[0].body; got != tt.wantReq {
				t.Errorf("request = %s, want %s", got, tt.wantReq)
			}
		})
	}
}

// TestCLIPasswordPrecedence gives several password sources, only one of them right: the
// server accepts the request only if the CLI picked the source of highest precedence.
func TestCLIPasswordPrecedence(t *testing.T) {
	tests := []struct {
		name        string
		arg         string // positional password
		file        string // --password-file content; "" = no flag
		env         string
		conf        string
		wantCode    int
		wantWarning bool
	}{
		{name: "argument first", arg: "right", file: "wrong", env: "wrong", conf: "wrong", wantCode: ExitOK, wantWarning: true},
		{name: "file second", file: "right\n", env: "wrong", conf: "wrong", wantCode: ExitOK},
		{name: "environment third", env: "right", conf: "wrong", wantCode: ExitOK},
		{name: "config last", conf: "right", wantCode: ExitOK},
		{name: "file beats environment", file: "wrong", env: "right", wantCode: ExitAuth},
		{name: "environment beats config", env: "wrong", conf: "right", wantCode: ExitAuth},
		{name: "argument beats file", arg: "wrong", file: "right", wantCode: ExitAuth, wantWarning: true},
		{name: "blank environment skipped", env: " ", conf: "right", wantCode: ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("right"))
			dir := t.TempDir()
			env := map[string]string{}
			if tt.env != "" {
				env["CLB_PASSWORD"] = tt.env
			}
			if tt.conf != "" {
				writeFile(t, dir, "client.conf", "password = "+tt.conf+"\n")
			}
			var args []string
			if tt.file != "" {
				args = append(args, "--password-file", writeFile(t, dir, "pw", tt.file))
			}
			if tt.arg != "" {
				args = append(args, tt.arg)
			}
			args = append(args, srv.hostPort(), "web")
			code, _, stderr := cliRun{env: env, dir: dir}.run(t, args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if got := strings.Contains(stderr, argvWarning); got != tt.wantWarning {
				t.Errorf("password warning = %v, want %v; stderr:\n%s", got, tt.wantWarning, stderr)
			}
		})
	}
}

func TestCLIKeyID(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		conf     string
		args     []string
		wantCode int
	}{
		{name: "config key id with config password", conf: "password = pw\nkey_id = members\n", wantCode: ExitOK},
		{name: "flag", env: map[string]string{"CLB_PASSWORD": "pw"}, args: []string{"--key-id", "members"}, wantCode: ExitOK},
		{name: "environment", env: map[string]string{"CLB_PASSWORD": "pw", "CLB_KEY_ID": "members"}, wantCode: ExitOK},
		{name: "flag beats config", conf: "password = pw\nkey_id = members\n", args: []string{"--key-id", "default"}, wantCode: ExitAuth},
		{name: "config key id not used for another password", env: map[string]string{"CLB_PASSWORD": "pw"}, conf: "key_id = members\nserver = x\n", wantCode: ExitAuth},
		{name: "default", env: map[string]string{"CLB_PASSWORD": "pw"}, wantCode: ExitAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, auth.StaticKeys{"members": auth.DeriveKey([]byte("pw"))})
			dir := t.TempDir()
			if tt.conf != "" {
				writeFile(t, dir, "client.conf", tt.conf)
			}
			code, _, stderr := cliRun{env: tt.env, dir: dir}.run(t, append(tt.args, srv.hostPort(), "web")...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
		})
	}
}

func TestCLIExitCodes(t *testing.T) {
	notApplied := reply{status: 503, code: "not_applied", msg: "change saved but not applied: haproxy -c failed"}
	dir := t.TempDir()
	emptyFile := writeFile(t, dir, "empty", "\n")
	badConf := writeFile(t, dir, "bad.conf", "password = pw\nproxy = http://p.example\n")
	okEnv := map[string]string{"CLB_PASSWORD": "pw"}
	tests := []struct {
		name      string
		replies   []reply
		env       map[string]string // nil = okEnv
		args      []string          // SERVER is replaced by the fake server's address
		wantCode  int
		wantInErr string
	}{
		{name: "ok", args: []string{"SERVER", "web"}, wantCode: ExitOK},
		{name: "help", args: []string{"--help"}, wantCode: ExitOK},

		{name: "one argument", args: []string{"web"}, wantCode: ExitUsage, wantInErr: "got 1 argument(s)"},
		{name: "four arguments", args: []string{"pw", "SERVER", "web", "extra"}, wantCode: ExitUsage, wantInErr: "got 4 argument(s)"},
		{name: "flag after arguments", args: []string{"SERVER", "web", "--port", "80"}, wantCode: ExitUsage, wantInErr: "flags must come first"},
		{name: "unknown flag", args: []string{"--frobnicate", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "flag provided but not defined: -frobnicate"},
		{name: "port not a number", args: []string{"--port", "http", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "invalid value"},
		{name: "port out of range", args: []string{"--port", "70000", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--port: invalid value: port 70000"},
		{name: "port zero", args: []string{"--port", "0", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "port 0"},
		{name: "weight", args: []string{"--weight", "300", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "weight 300"},
		{name: "service name", args: []string{"SERVER", "Web!"}, wantCode: ExitUsage, wantInErr: "service name"},
		{name: "member name", args: []string{"--name", "a b", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "member name"},
		{name: "server", args: []string{"ftp://lb", "web"}, wantCode: ExitUsage, wantInErr: `scheme "ftp"`},
		{name: "server twice", args: []string{"--server", "lb.example", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "server given twice"},
		{name: "service twice", args: []string{"--service", "db", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "service given twice"},
		{name: "no server", args: []string{"--service", "web"}, wantCode: ExitUsage, wantInErr: "no server"},
		{name: "no service", args: []string{"--server", "SERVER"}, wantCode: ExitUsage, wantInErr: "no service"},
		{name: "no password", env: map[string]string{}, args: []string{"SERVER", "web"}, wantCode: ExitUsage, wantInErr: "no password"},
		{name: "empty password argument", args: []string{" ", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "PASSWORD argument is empty"},
		{name: "missing password file", args: []string{"--password-file", filepath.Join(dir, "nope"), "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "no such file"},
		{name: "empty password file", args: []string{"--password-file", emptyFile, "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "file is empty"},
		{name: "missing client config", args: []string{"--client-config", filepath.Join(dir, "nope.conf"), "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "no such file"},
		{name: "bad client config", args: []string{"--client-config", badConf, "SERVER", "web"}, wantCode: ExitUsage, wantInErr: `line 2: unknown key "proxy"`},
		{name: "key id", args: []string{"--key-id", "a,b", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "key id"},
		{name: "timeout", args: []string{"--timeout", "0s", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--timeout 0s"},
		{name: "ttl zero", args: []string{"--ttl", "0s", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--ttl 0s: want 1s-24h0m0s"},
		{name: "ttl short", args: []string{"--ttl", "500ms", "--keepalive", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--ttl 500ms: want 1s-24h0m0s"},
		{name: "ttl long", args: []string{"--ttl", "25h", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--ttl 25h0m0s: want 1s-24h0m0s"},
		{name: "ttl refused", replies: []reply{{status: 400, code: "bad_request", msg: "ttl 2s: want 5s-24h0m0s"}}, args: []string{"--ttl", "2s", "SERVER", "web"}, wantCode: ExitRefused, wantInErr: "ttl 2s: want 5s"},
		{name: "keepalive", args: []string{"--keepalive", "SERVER", "web"}, wantCode: ExitUsage, wantInErr: "--keepalive needs --ttl"},

		{name: "wrong password", env: map[string]string{"CLB_PASSWORD": "nope"}, args: []string{"SERVER", "web"}, wantCode: ExitAuth, wantInErr: "(401 unauthenticated): request signature is missing, stale or invalid"},
		{name: "forbidden", replies: []reply{{status: 403, code: "forbidden", msg: "key default may not register into web"}}, args: []string{"SERVER", "web"}, wantCode: ExitAuth, wantInErr: "may not register into web"},
		{name: "unknown service", replies: []reply{{status: 404, code: "not_found", msg: "service web is not defined"}}, args: []string{"SERVER", "web"}, wantCode: ExitRefused, wantInErr: "service web is not defined"},
		{name: "conflict", replies: []reply{{status: 409, code: "conflict", msg: "member web-1 has another address"}}, args: []string{"--name", "web-1", "SERVER", "web"}, wantCode: ExitRefused, wantInErr: "member web-1 has another address"},
		{name: "not applied", replies: []reply{notApplied}, args: []string{"--timeout", "200ms", "SERVER", "web"}, wantCode: ExitNotApplied, wantInErr: "accepted but not applied (503 not_applied"},
		{name: "not applied, then applied", replies: []reply{notApplied, {status: 200}}, args: []string{"--timeout", "5s", "SERVER", "web"}, wantCode: ExitOK},
		{name: "rate limited", replies: []reply{{status: 429, code: "rate_limited", msg: "too many requests from 127.0.0.1", retryAfter: "0"}}, args: []string{"--timeout", "200ms", "SERVER", "web"}, wantCode: ExitUnreachable, wantInErr: "too many requests"},
		{name: "unreachable", args: []string{"--timeout", "200ms", "CLOSED", "web"}, wantCode: ExitUnreachable, wantInErr: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"), tt.replies...)
			closed := closedAddr(t)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.NewReplacer("SERVER", srv.hostPort(), "CLOSED", closed).Replace(a)
			}
			env := tt.env
			if env == nil {
				env = okEnv
			}
			code, stdout, stderr := cliRun{env: env}.run(t, args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantInErr) {
				t.Errorf("stderr = %q, want containing %q", stderr, tt.wantInErr)
			}
			switch {
			case code == ExitUsage:
				if !strings.Contains(stderr, "clb_register: ") || !strings.Contains(stderr, "Run 'clb_register --help' for usage.") {
					t.Errorf("usage error without program name or hint:\n%s", stderr)
				}
				if n := len(srv.Calls()) + srv.Refused(); n != 0 {
					t.Errorf("usage error after %d requests, want none", n)
				}
			case code != ExitOK:
				if stdout != "" {
					t.Errorf("stdout = %q on failure, want empty", stdout)
				}
			}
		})
	}
}

func TestMainProgramName(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{args: []string{"/usr/bin/clb_unregister", "--help"}, wantCode: ExitOK, wantOut: "clb_unregister - remove this machine"},
		{args: []string{"clb_register", "-h"}, wantCode: ExitOK, wantOut: "clb_register - register this machine"},
		{args: []string{"clb_register", "--ttl", "-1m"}, wantCode: ExitUsage, wantErr: "clb_register: --ttl -1m0s: want 1s-24h0m0s"},
		{args: []string{"/opt/clb/clb_unregister", "--keepalive"}, wantCode: ExitUsage, wantErr: "clb_unregister: --keepalive needs --ttl"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := Main(tt.args, &out, &errb)
		if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
		}
	}
}

func TestParseClientConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    clientConfig
		wantErr string
	}{
		{
			name: "equals and colons",
			in:   "# clb client\n\npassword = s3cret\nserver: http://lb.example:8090\n  service=web  \nkey_id: members\n",
			want: clientConfig{password: "s3cret", server: "http://lb.example:8090", service: "web", keyID: "members"},
		},
		{name: "quoted", in: "password = \"a b=c:d\"\nservice = 'web'\n", want: clientConfig{password: "a b=c:d", service: "web"}},
		{name: "hash in value", in: "password = ab#cd\n", want: clientConfig{password: "ab#cd"}},
		{name: "empty", in: "", want: clientConfig{}},
		{name: "unknown key", in: "password = x\nproxy = http://p\n", wantErr: `line 2: unknown key "proxy"`},
		{name: "no separator", in: "password\n", wantErr: "line 1: want key = value"},
		{name: "repeated", in: "server = a\nserver = b\n", wantErr: "line 2: server given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClientConfig(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseClientConfig() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseClientConfig() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("parseClientConfig() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestCLIInstanceID: --instance-id (or $CLB_INSTANCE_ID) announces the instance, then
// registers the member named by it; "auto" reads cloud-init's instance data (its zone unless
// --zone is given), and without that data registers as before.
func TestCLIInstanceID(t *testing.T) {
	dir := t.TempDir()
	data := writeFile(t, dir, "instance-data.json", `{"v1": {"instance_id": "i-0abc123", "availability_zone": "EU-West-1b", "region": "eu-west-1"}}`)
	tests := []struct {
		name     string
		args     []string
		env      string
		data     string
		wantReqs []string
		wantCode int
	}{
		{name: "explicit", args: []string{"--instance-id", "i-4f8cf126", "--zone", "us-east-1a"},
			wantReqs: []string{`PUT /v1/instances/i-4f8cf126 {"address":"","zone":"us-east-1a"}`, `PUT /v1/services/web/members/i-4f8cf126 {"zone":"us-east-1a"}`}},
		{name: "from the environment", env: "i-77", wantReqs: []string{`PUT /v1/instances/i-77 {"address":"","zone":""}`, `PUT /v1/services/web/members/i-77 {}`}},
		{name: "auto from cloud-init", args: []string{"--instance-id", "auto"}, data: data,
			wantReqs: []string{`PUT /v1/instances/i-0abc123 {"address":"","zone":"eu-west-1b"}`, `PUT /v1/services/web/members/i-0abc123 {"zone":"eu-west-1b"}`}},
		{name: "auto, --zone wins", args: []string{"--instance-id", "auto", "--zone", "z9", "--name", "web-1"}, data: data,
			wantReqs: []string{`PUT /v1/instances/i-0abc123 {"address":"","zone":"z9"}`, `PUT /v1/services/web/members/web-1 {"zone":"z9"}`}},
		{name: "auto without cloud-init", args: []string{"--instance-id", "auto"}, data: filepath.Join(dir, "none.json"),
			wantReqs: []string{`POST /v1/services/web/members {}`}},
		{name: "bad id", args: []string{"--instance-id", "i 1"}, wantCode: ExitUsage},
		{name: "bad data", args: []string{"--instance-id", "auto"}, data: writeFile(t, dir, "bad.json", "{"), wantCode: ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t, keysFor("pw"))
			env := map[string]string{"CLB_PASSWORD": "pw"}
			if tt.env != "" {
				env["CLB_INSTANCE_ID"] = tt.env
			}
			code, _, stderr := cliRun{env: env, instanceData: tt.data}.run(t, append(tt.args, srv.hostPort(), "web")...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			var got []string
			for _, c := range srv.Calls() {
				got = append(got, c.method+" "+c.path+" "+c.body)
			}
			if strings.Join(got, "\n") != strings.Join(tt.wantReqs, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.wantReqs, "\n"))
			}
		})
	}
}

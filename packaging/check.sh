#!/usr/bin/env bash
# Checks the packages `make deb` built (make check-packages; part of make test):
#   lintian --fail-on error; systemd-analyze verify of every unit, failing on any output;
#   dpkg -i of both packages on this machine (systemd need not run), their contents,
#   conffiles, user and state dir; clbd check of the installed default config as the service
#   user; a short run of clbd as the unit runs it; an install over a config written
#   beforehand (the cloud-init path); dpkg -P, leaving the machine as it was.
# It needs root and a machine without clb installed (a CI machine): it installs and purges.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}

fail() { echo "check-packages: FAIL: $*" >&2; exit 1; }
step() { echo "check-packages: $*"; }

if [ "$(id -u)" != 0 ]; then
	[ -n "${CI:-}" ] && fail "needs root (dpkg -i)"
	echo "check-packages: SKIPPED: needs root (it installs and purges the packages); CI runs it" >&2
	exit 0
fi
for p in clb-server clb-client; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
		fail "$p is installed on this machine; these checks install and purge it, so they refuse to run here"
	fi
done
server=$(ls -t "$DIST"/clb-server_*.deb | head -1)
client=$(ls -t "$DIST"/clb-client_*.deb | head -1)

tmp=$(mktemp -d /tmp/clb-check.XXXXXX)
chmod 0755 "$tmp"
smoke=""
cleanup() {
	[ -n "$smoke" ] && kill "$smoke" 2>/dev/null && wait "$smoke" 2>/dev/null || true
	DEBIAN_FRONTEND=noninteractive dpkg -P clb-client clb-server >/dev/null 2>&1 || true
	rm -rf "$tmp" /etc/clb/clbd.yaml.dpkg-dist
	rmdir /etc/clb 2>/dev/null || true
}
trap cleanup EXIT

step "lintian $server $client"
rc=0
lintian --fail-on error --display-info "$server" "$client" >"$tmp/lintian.log" 2>&1 || rc=$?
grep -v 'running with root privileges' "$tmp/lintian.log" || true
[ "$rc" = 0 ] || fail "lintian reports errors"

step "dpkg -i (no systemd needed: units are enabled, nothing starts)"
DEBIAN_FRONTEND=noninteractive dpkg -i "$server" "$client" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i"; }

step "systemd-analyze verify"
for unit in clb-server.service clb-register@web.service; do
	out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
done

step "contents, conffiles, user, state dir"
[ "$(dpkg-query -W -f='${Conffiles}' clb-server | awk '{print $1}' | xargs)" = "/etc/clb/clbd.yaml" ] || fail "clb-server conffiles: $(dpkg-query -W -f='${Conffiles}' clb-server)"
[ "$(dpkg-query -W -f='${Conffiles}' clb-client | awk '{print $1}' | sort | xargs)" = "/etc/clb/client.conf /etc/default/clb-register" ] || fail "clb-client conffiles: $(dpkg-query -W -f='${Conffiles}' clb-client)"
[ "$(stat -c %a:%U /etc/clb/client.conf)" = "600:root" ] || fail "client.conf is $(stat -c %a:%U /etc/clb/client.conf), want 600:root"
getent passwd clb-server >/dev/null || fail "no system user clb-server"
[ "$(stat -c %a:%U:%G /var/lib/clb-server)" = "750:clb-server:clb-server" ] || fail "/var/lib/clb-server is $(stat -c %a:%U:%G /var/lib/clb-server)"
cmp -s templates/haproxy.tmpl /var/lib/clb-server/templates/haproxy.tmpl || fail "the editable template is not the built-in one"
[ -L /etc/systemd/system/multi-user.target.wants/clb-server.service ] || fail "clb-server.service is not enabled"
dpkg -L clb-server | grep -qx /etc/haproxy/haproxy.cfg && fail "clb-server ships haproxy's conffile"
for f in /usr/sbin/clbd /usr/bin/clb_register /usr/bin/clb_unregister; do
	"$f" --help >/dev/null || fail "$f --help"
done
man -l /usr/share/man/man8/clbd.8.gz >/dev/null 2>"$tmp/man.err" && [ ! -s "$tmp/man.err" ] || fail "clbd(8): $(cat "$tmp/man.err")"
bash -c 'source /usr/share/bash-completion/completions/clbd; COMP_WORDS=(clbd che); COMP_CWORD=1; _clbd; [ "${COMPREPLY[*]}" = check ]' || fail "bash completion of clbd"

step "clbd check of the installed default config, as clb-server"
runuser -u clb-server -- clbd check --managed || fail "clbd check"

step "clbd as clb-server.service runs it (loopback copy of the config)"
sed -e 's|^      - port: 80 .*|&\n        address: 127.0.0.1|' /etc/clb/clbd.yaml >"$tmp/clbd.yaml"
grep -q 'address: 127.0.0.1' "$tmp/clbd.yaml" || fail "could not make a loopback copy of /etc/clb/clbd.yaml"
chmod 0644 "$tmp/clbd.yaml"
api=127.0.0.1:$((20000 + RANDOM % 20000))
setpriv --reuid=clb-server --regid=clb-server --init-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
	/usr/sbin/clbd --managed --config "$tmp/clbd.yaml" --state-dir /var/lib/clb-server --listen "$api" >"$tmp/clbd.log" 2>&1 &
smoke=$!
for _ in $(seq 100); do
	curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break
	kill -0 "$smoke" 2>/dev/null || { cat "$tmp/clbd.log"; fail "clbd exited"; }
	sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/) || true
[ "$code" = 503 ] || { cat "$tmp/clbd.log"; fail "haproxy on 127.0.0.1:80 answered $code, want 503 (no member yet)"; }
[ "$(stat -c %a:%U /var/lib/clb-server/password)" = "600:clb-server" ] || fail "generated password is $(stat -c %a:%U /var/lib/clb-server/password)"
kill -TERM "$smoke"
wait "$smoke" || { cat "$tmp/clbd.log"; fail "clbd exited non-zero after SIGTERM"; }
smoke=""
pgrep -u clb-server haproxy >/dev/null && fail "haproxy left running after clbd stopped"

step "dpkg -P leaves nothing behind"
DEBIAN_FRONTEND=noninteractive dpkg -P clb-client clb-server >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -P"; }
for p in /etc/clb /var/lib/clb-server /lib/systemd/system/clb-server.service /etc/systemd/system/multi-user.target.wants/clb-server.service /etc/default/clb-register; do
	[ -e "$p" ] && fail "$p left after purge"
done
getent passwd clb-server >/dev/null && fail "user clb-server left after purge"

step "install over a config and password written beforehand (cloud-init's write_files)"
mkdir -p /etc/clb /var/lib/clb-server
printf 'services:\n  api:\n    listeners:\n      - port: 8081\n' >/etc/clb/clbd.yaml
printf 'preseeded\n' >/var/lib/clb-server/password
chmod 0600 /var/lib/clb-server/password
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$server" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i --force-confold"; }
grep -q 'api:' /etc/clb/clbd.yaml || fail "the local /etc/clb/clbd.yaml was replaced"
[ "$(stat -c %U /var/lib/clb-server/password)" = clb-server ] || fail "a preseeded password is not handed to clb-server"
runuser -u clb-server -- clbd check --managed >/dev/null || fail "clbd check of the preseeded config"
DEBIAN_FRONTEND=noninteractive dpkg -P clb-server >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -P"; }
[ -e /var/lib/clb-server ] && fail "/var/lib/clb-server left after purge"

step "ok"

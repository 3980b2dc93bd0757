#!/bin/sh
# check_clb.sh — keepalived's health check of a clb load balancer (vrrp_script): exit 0 when
# clbd answers /healthz and haproxy answers on a frontend, non-zero (with the reason on
# stderr) otherwise. Any HTTP answer from haproxy counts, a 503 included: a service without
# members is the same on every node and no reason to move the address.
#
#   check_clb.sh [API_URL] [FRONTEND_URL] [TIMEOUT_SECONDS]
#   defaults:     http://127.0.0.1:8090  http://127.0.0.1:80/  2
#
# -k: the API's certificate is usually self-signed and pinned by the members; this is a
# liveness check on this machine, not a trust decision.
set -u
api=${1:-http://127.0.0.1:8090}
front=${2:-http://127.0.0.1:80/}
t=${3:-2}

if ! curl -ksf -o /dev/null --max-time "$t" "$api/healthz"; then
	echo "check_clb: clbd does not answer $api/healthz" >&2
	exit 1
fi
code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time "$t" "$front")
if [ "$code" = "000" ] || [ -z "$code" ]; then
	echo "check_clb: haproxy does not answer on $front" >&2
	exit 2
fi
exit 0

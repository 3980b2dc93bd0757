#!/bin/sh
# Reload command for the external-mode tests: what `systemctl reload haproxy` does for Debian's
# unit (SIGUSR2 to the master), then wait until the master has forked a new worker, so that
# the command returns when the new config serves. Fails on purpose while FAILFLAG exists.
set -eu
pidfile=$1
failflag=${2:-}
if [ -n "$failflag" ] && [ -e "$failflag" ]; then
  echo "reload refused: $failflag exists" >&2
  exit 3
fi
pid=$(cat "$pidfile")
before=" $(pgrep -P "$pid" | tr '\n' ' ') "
kill -USR2 "$pid"
i=0
while [ "$i" -lt 200 ]; do
  for p in $(pgrep -P "$pid"); do
    case "$before" in *" $p "*) ;; *) sleep 0.02; exit 0 ;; esac
  done
  sleep 0.02
  i=$((i + 1))
done
echo "haproxy forked no new worker within 4s" >&2
exit 1

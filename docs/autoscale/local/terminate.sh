#!/bin/sh
# terminate.sh DIR: stops the local instance CLB_INSTANCE_ID started by launch.sh (SIGTERM,
# then SIGKILL after 10 s). An instance that does not exist is already terminated: exit 0
# (clbd terminates by name after a crash, when it cannot know whether the launch happened).
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
id=${CLB_INSTANCE_ID:?CLB_INSTANCE_ID is not set: run me from clbd}
pidfile="$dir/$id.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
kill -TERM "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }
i=0
while kill -0 "$pid" 2>/dev/null; do
	# A zombie has exited (its parent, init here, reaps it later).
	[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
	i=$((i + 1))
	if [ "$i" -ge 100 ]; then
		kill -KILL "$pid" 2>/dev/null || true
		break
	fi
	sleep 0.1
done
rm -f "$pidfile"

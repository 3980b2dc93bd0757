#!/bin/sh
# clbd launcher example (copy docs/autoscale/ of the clb source to /etc/clb/launchers/): instances are local processes (what clb's own tests use).
#
#   launchers:
#     local:
#       launch: /etc/clb/launchers/local/launch.sh /var/lib/clb-local MEMBER-COMMAND [ARG...]
#       terminate: /etc/clb/launchers/local/terminate.sh /var/lib/clb-local
#
# launch.sh DIR COMMAND [ARG...] starts COMMAND in a session of its own (it outlives clbd),
# with clbd's CLB_* variables (CLB_INSTANCE_NAME, CLB_ZONE, CLB_GROUP, ...) in its
# environment, writes its pid to DIR/NAME.pid and its output to DIR/NAME.log, and prints the
# instance id: the name clbd chose. COMMAND is expected to register itself (clb_register
# --instance-id "$CLB_INSTANCE_NAME" --name "$CLB_INSTANCE_NAME" --zone "$CLB_ZONE" ...).
set -eu
if [ $# -lt 2 ]; then
	echo "usage: $0 DIR COMMAND [ARG...]" >&2
	exit 2
fi
dir=$1
shift
name=${CLB_INSTANCE_NAME:?CLB_INSTANCE_NAME is not set: run me from clbd}
mkdir -p "$dir"
setsid "$@" >"$dir/$name.log" 2>&1 </dev/null &
echo $! >"$dir/$name.pid.tmp"
mv "$dir/$name.pid.tmp" "$dir/$name.pid"
echo "$name"

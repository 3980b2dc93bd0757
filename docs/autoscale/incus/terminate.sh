#!/bin/sh
# Deletes the incus instance CLB_INSTANCE_ID (see launch.sh). An instance that does not exist
# is terminated already: exit 0 (clbd terminates by name after a crash mid-launch).
set -eu
incus=${INCUS:-incus}
id=${CLB_INSTANCE_ID:?run me from clbd}
if ! "$incus" info "$id" >/dev/null 2>&1; then
	exit 0
fi
"$incus" delete --force "$id"

#!/bin/sh
# clbd launcher example (copy docs/autoscale/ of the clb source to /etc/clb/launchers/): instances are docker containers on this host (or DOCKER_HOST).
#
#   launchers:
#     docker:
#       launch: /etc/clb/launchers/docker/launch.sh
#       terminate: /etc/clb/launchers/docker/terminate.sh
#   launch_configurations:
#     web: {launcher: docker, image_id: registry.example/web:1.4}
#
# The image registers itself: its entrypoint runs the application and
#   clb_register --server "$CLB_SERVER" --service "$CLB_SERVICE" --instance-id "$CLB_INSTANCE_ID" \
#                --zone "$CLB_ZONE" --ttl 30s --keepalive
# with the password in /etc/clb/client.conf or $CLB_PASSWORD (a docker secret). The container
# is named CLB_INSTANCE_NAME and gets it as CLB_INSTANCE_ID; CLB_SERVER and CLB_PASSWORD_FILE
# are passed on from clbd's environment when set. The first of the group's services is
# CLB_SERVICE.
set -eu
name=${CLB_INSTANCE_NAME:?run me from clbd}
image=${CLB_IMAGE_ID:?the launch configuration has no image_id}
service=${CLB_SERVICES%%,*}
set -- run --detach --name "$name" --restart no --label "clb.group=${CLB_GROUP:-}" --label "clb.zone=${CLB_ZONE:-}" \
	--env "CLB_INSTANCE_ID=$name" --env "CLB_ZONE=${CLB_ZONE:-}" --env "CLB_SERVICE=$service"
[ -n "${CLB_SERVER:-}" ] && set -- "$@" --env "CLB_SERVER=$CLB_SERVER"
[ -n "${CLB_PASSWORD_FILE:-}" ] && set -- "$@" --mount "type=bind,src=$CLB_PASSWORD_FILE,dst=/run/secrets/clb-password,readonly" --env CLB_PASSWORD_FILE=/run/secrets/clb-password
docker "$@" "$image" >&2
echo "$name"

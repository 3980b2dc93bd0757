#!/bin/sh
# clbd launcher example (copy docs/autoscale/ of the clb source to /etc/clb/launchers/): instances are incus (or LXD: set INCUS=lxc) system containers or VMs
# booted with cloud-init.
#
#   launchers:
#     incus:
#       launch: /etc/clb/launchers/incus/launch.sh
#       terminate: /etc/clb/launchers/incus/terminate.sh
#       timeout: 5m
#   launch_configurations:
#     web:
#       launcher: incus
#       image_id: images:debian/12/cloud     # any image with cloud-init
#       instance_type: c2-m4                 # incus instance type (limits)
#       user_data: |                          # the member's cloud-config: cloud-init/member.yaml
#         #cloud-config                       # (as scripts/cloud-init-userdata fills it in)
#         ...
#
# The instance is named CLB_INSTANCE_NAME; incus gives cloud-init that name as its
# instance-id, so clb-register@SERVICE (CLB_INSTANCE_ID=auto) registers the member under the
# name clbd expects. Vendor data sets CLB_REGISTER_OPTS="--zone CLB_ZONE" in
# /etc/default/clb-register (put other options there through your user data), and
# the incus project/target follow the zone when INCUS_TARGET_<ZONE> is set (a cluster member
# per zone). CLB_USER_DATA may be base64 (the AWS API sends it so) or plain text.
set -eu
incus=${INCUS:-incus}
name=${CLB_INSTANCE_NAME:?run me from clbd}
image=${CLB_IMAGE_ID:?the launch configuration has no image_id}
user_data=${CLB_USER_DATA:-}
if decoded=$(printf '%s' "$user_data" | base64 -d 2>/dev/null) && [ -n "$decoded" ]; then
	user_data=$decoded
fi
vendor_data=$(cat <<EOT
#cloud-config
write_files:
  - path: /etc/default/clb-register
    append: true
    content: |
      CLB_INSTANCE_ID=auto
      CLB_REGISTER_OPTS="--zone ${CLB_ZONE:-}"
EOT
)
set -- launch "$image" "$name" --config "cloud-init.user-data=$user_data" --config "cloud-init.vendor-data=$vendor_data" \
	--config "user.clb.group=${CLB_GROUP:-}" --config "user.clb.zone=${CLB_ZONE:-}"
[ -n "${CLB_INSTANCE_TYPE:-}" ] && set -- "$@" --type "$CLB_INSTANCE_TYPE"
zone_var=$(printf 'INCUS_TARGET_%s' "${CLB_ZONE:-}" | tr -c 'A-Za-z0-9_\n' _)
eval "target=\${$zone_var:-}"
[ -n "$target" ] && set -- "$@" --target "$target"
"$incus" "$@" >&2
echo "$name"

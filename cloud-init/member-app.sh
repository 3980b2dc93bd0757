#!/bin/sh
# Example application part for members (scripts/cloud-init-userdata ... cloud-init/member-app.sh:x-shellscript):
# nginx serves this machine's name, so answers through the load balancer show the balancing.
hostname >/var/www/html/index.nginx-debian.html

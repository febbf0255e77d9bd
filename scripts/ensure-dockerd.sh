#!/bin/sh
# Make sure a Docker engine answers; as root with none running, start dockerd in the background
# (this machine has no systemd). Then build the local demo images.
set -eu
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "no Docker engine answers and you are not root: start dockerd, or set DOCKER_HOST" >&2
    exit 1
  fi
  echo "starting dockerd in the background (log: /var/log/dockerd.log)"
  setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &  # its own session: outlives the shell that started it
  i=0
  until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 60 ]; then echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; fi
    sleep 0.5
  done
fi
./scripts/build-images.sh

#!/bin/sh
# Build the local demo images (dockyard/demo:1.0, :2.0 and :broken) from the static busybox.
# No registry is contacted: the images start FROM scratch.
set -eu
DOCKER=${DOCKER:-docker}
here=$(cd "$(dirname "$0")/.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/images/demo/Dockerfile" "$here/images/demo/demo.sh" "$ctx/"
cp "$(command -v busybox || echo /bin/busybox)" "$ctx/busybox"
# images built from other sources than these (an older demo.sh) are built again
source_hash=$(cat "$here/images/demo/Dockerfile" "$here/images/demo/demo.sh" | sha256sum | cut -c1-16)
build() {
  tag=$1; shift
  if [ -z "${FORCE:-}" ] && [ "$($DOCKER image inspect -f '{{index .Config.Labels "dockyard.demo.source"}}' "$tag" \
      2>/dev/null)" = "$source_hash" ]; then return 0; fi
  DOCKER_BUILDKIT=0 $DOCKER build -q --pull=false --label "dockyard.demo.source=$source_hash" "$@" -t "$tag" "$ctx" \
    >/dev/null
  echo "built $tag"
}
build dockyard/demo:1.0 --build-arg VERSION=1.0
build dockyard/demo:2.0 --build-arg VERSION=2.0
build dockyard/demo:broken --build-arg VERSION=broken --build-arg BROKEN=1

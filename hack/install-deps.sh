#!/usr/bin/env bash
# Install the Debian packages the local cluster and the tests need, if any is missing.
# Everything comes from Debian's package archive; nothing is downloaded from anywhere else.
set -euo pipefail

packages=(
  containerd runc containernetworking-plugins iptables conntrack   # the node
  debootstrap busybox-static buildah                               # local images
  docker-registry skopeo                                           # the local OCI registry, pushing to it
  shellcheck                                                       # actionlint checks workflow scripts with it
  xfsprogs e2fsprogs fuse3 fio                                      # agent tests and benchmarks
  prometheus                                                        # promtool and the e2e Prometheus
  openssl ca-certificates
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's prometheus package may start a service where an init system exists; we run our own.
if command -v service >/dev/null && pgrep -x prometheus >/dev/null 2>&1; then
  service prometheus stop >/dev/null 2>&1 || true
fi
# Likewise Debian's docker-registry service (port 5000; the local cluster runs its own on 5001).
# Found by the service's pid file: a name match would also find the cluster's registry.
if command -v service >/dev/null && [[ -s /run/docker-registry.pid ]] \
  && kill -0 "$(cat /run/docker-registry.pid)" 2>/dev/null; then
  service docker-registry stop >/dev/null 2>&1 || true
fi

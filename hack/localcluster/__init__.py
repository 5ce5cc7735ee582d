"""A real one-machine Kubernetes cluster for volprobe's development, demos and CI.

Nothing here is pulled from an image registry: Kubernetes, etcd, kwok, helm and the
local-path-provisioner are built from the Go module proxy, containerd/runc/CNI come from
Debian, and every image is assembled locally and imported into containerd.
"""

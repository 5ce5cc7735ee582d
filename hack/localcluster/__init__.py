"""A real one-machine Kubernetes cluster for volprobe's development, demos and CI.

Nothing here is pulled from a registry off this machine: Kubernetes, etcd, kwok, helm and the
local-path-provisioner are built from the Go module proxy, containerd/runc/CNI come from
Debian, and every image is assembled locally. The cluster's own images are imported into
containerd; volprobe's is pushed to the cluster's registry (registry.py) and pulled from there,
as on a user's cluster.
"""

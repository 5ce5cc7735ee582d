"""Command lines and configuration files of every daemon in the local cluster.

Pure functions of the layout and the host address: they write files and return argv lists, and
start nothing. `cluster.py` decides the order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import registry
from .config import Layout
from .host import BRIDGE, POD_CIDR, SERVICE_CIDR

API_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:2379"
REAL_NODE = "volprobe-node"
NODE_TYPE_LABEL = "volprobe.io/node-type"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Binaries:
    kubernetes: Path
    etcd: Path
    kwok: Path
    helm: Path
    local_path_provisioner: Path
    chaos: Mapping[str, Path]
    """The chaos CSI driver and its sidecars (hack/localcluster/chaos.py), by component."""
    versitygw: Path

    def k8s(self, name: str) -> str:
        return str(self.kubernetes / name)


def etcd(layout: Layout, bins: Binaries) -> list[str]:
    # --unsafe-no-fsync: this cluster is disposable and the VM's disk is shared; fsync latency
    # would only slow the control plane down, never protect data we care about.
    return [
        str(bins.etcd / "etcd"),
        "--name=volprobe",
        f"--data-dir={layout.state / 'etcd'}",
        f"--listen-client-urls={ETCD_CLIENT}",
        f"--advertise-client-urls={ETCD_CLIENT}",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=volprobe=http://127.0.0.1:2380",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def kube_apiserver(layout: Layout, bins: Binaries, host_ip: str) -> list[str]:
    pki = layout.pki
    return [
        bins.k8s("kube-apiserver"),
        f"--etcd-servers={ETCD_CLIENT}",
        f"--advertise-address={host_ip}",
        "--bind-address=0.0.0.0",
        f"--secure-port={API_PORT}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        # Nodes are reached by address: nothing resolves the real node's name.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--cert-dir={layout.state / 'apiserver'}",
        "--profiling=false",
        "--v=1",
    ]


def _control_plane_client(layout: Layout, name: str, port: int) -> list[str]:
    """Flags every control-plane component shares: its identity, its own serving port."""
    kubeconfig = layout.state / "kubeconfigs" / name
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.state / name}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kube_controller_manager(layout: Layout, bins: Binaries) -> list[str]:
    return [
        bins.k8s("kube-controller-manager"),
        *_control_plane_client(layout, "controller-manager", 10257),
        "--controllers=*",
        f"--service-account-private-key-file={layout.pki / 'sa.key'}",
        f"--root-ca-file={layout.pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={layout.pki / 'ca.crt'}",
        f"--cluster-signing-key-file={layout.pki / 'ca.key'}",
        "--use-service-account-credentials=true",
    ]


def kube_scheduler(layout: Layout, bins: Binaries) -> list[str]:
    return [bins.k8s("kube-scheduler"), *_control_plane_client(layout, "scheduler", 10259)]


def containerd_socket(layout: Layout) -> Path:
    return layout.run / "containerd.sock"


def containerd(layout: Layout, pause_image: str) -> list[str]:
    """containerd with the CRI plugin set up for this VM (see shared/notes/machine.md).

    cgroupfs (no systemd), `restrict_oom_score_adj` (root lacks CAP_SYS_RESOURCE, so runc
    cannot lower oom_score_adj), CNI from Debian's /usr/lib/cni, and snapshotters that cannot
    work here disabled so their load errors do not clutter the log.
    """
    config = layout.state / "containerd.toml"
    config.write_text(
        f"""version = 2
root = "{layout.state / "containerd"}"
state = "{layout.run / "containerd"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{containerd_socket(layout)}"

[ttrpc]
  address = "{layout.run / "containerd.sock.ttrpc"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.state / "containerd-opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{layout.state / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry.containerd_hosts(layout)}"
"""
    )
    cni = layout.state / "cni" / "net.d"
    cni.mkdir(parents=True, exist_ok=True)
    (cni / "10-volprobe.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "volprobe",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": True,
                        # No masquerading: pods only talk to the host and each other, and without
                        # it the plugin adds no iptables chains for us to clean up.
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(layout.state / "cni" / "ipam"),
                        },
                    }
                ],
            },
            indent=1,
        )
    )
    return ["/usr/bin/containerd", f"--config={config}", "--log-level=warn"]


def kubelet(layout: Layout, bins: Binaries, host_ip: str) -> list[str]:
    root = layout.kubelet_root
    root.mkdir(parents=True, exist_ok=True)
    pod_logs = layout.state / "pod-logs"
    pod_logs.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        # cgroup v1 is in maintenance; 1.34 still runs on it when told not to fail.
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{containerd_socket(layout)}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(pod_logs),
        "volumePluginDir": str(root / "volume-plugins"),
        # Root lacks CAP_SYS_RESOURCE here: the kubelet cannot lower its own OOM score.
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "readOnlyPort": 0,
        "serializeImagePulls": False,
        # The cluster's own images are imported, not pulled: garbage-collecting them would break
        # every pod (only volprobe's comes from the local registry, and could be pulled again).
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The VM's disk is shared with builds and caches; evict only when it is truly full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "maxPods": 250,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }
    config_path = layout.state / "kubelet-config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return [
        bins.k8s("kubelet"),
        f"--config={config_path}",
        f"--kubeconfig={layout.state / 'kubeconfigs' / 'kubelet'}",
        f"--root-dir={root}",
        f"--cert-dir={root / 'pki'}",
        f"--hostname-override={REAL_NODE}",
        f"--node-ip={host_ip}",
        f"--node-labels={NODE_TYPE_LABEL}=real",
        "--v=1",
    ]


def kube_proxy(layout: Layout, bins: Binaries) -> list[str]:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.state / "kubeconfigs" / "kube-proxy")},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": REAL_NODE,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Zeros mean "leave the host's conntrack settings alone"; root cannot raise them anyway.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        # Keeps kube-proxy from setting route_localnet on the host.
        "iptables": {"localhostNodePorts": False},
    }
    path = layout.state / "kube-proxy-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return [bins.k8s("kube-proxy"), f"--config={path}", "--v=1"]


def kwok(layout: Layout, bins: Binaries, stages: Path) -> list[str]:
    return [
        str(bins.kwok / "kwok"),
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-label-selector={NODE_TYPE_LABEL}=kwok",
        f"--config={stages}",
        "--cidr=10.245.0.1/16",
        "--node-ip=10.245.0.1",
        "--server-address=127.0.0.1:10247",
    ]


def kwok_node(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                NODE_TYPE_LABEL: "kwok",
            },
        },
        # Fake nodes run no containers: keep ordinary pods (and untolerating probes) off them.
        "spec": {"taints": [KWOK_TAINT]},
    }


def local_path_provisioner(layout: Layout, bins: Binaries, helper_image: str) -> list[str]:
    return [
        str(bins.local_path_provisioner / "local-path-provisioner"),
        "start",
        f"--kubeconfig={layout.kubeconfig}",
        "--namespace=local-path-storage",
        f"--helper-image={helper_image}",
        "--provisioner-name=rancher.io/local-path",
        "--configmap-name=local-path-config",
    ]

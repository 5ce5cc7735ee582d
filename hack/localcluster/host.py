"""What the cluster changes on the host, recorded before `up` and undone by `down`.

A kubelet, kube-proxy and the CNI bridge plugin change kernel settings, add iptables chains, a
bridge, veths, network namespaces, mounts and cgroups. `snapshot()` records what was there
before; `restore()` removes what we added and resets what we changed. `leftovers()` lists what
is still there, for `down` to report and for the test that proves `down` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "volprobe0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
NETNS_DIR = Path("/var/run/netns")
CONTAINER_LOG_LINKS = Path("/var/log/containers")

SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    # set by the kubelet unless protectKernelDefaults is on
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
OUR_CHAIN = re.compile(r"^(KUBE-|CNI-)")


@dataclass
class Snapshot:
    sysctls: dict[str, str] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        return cls(**json.loads(path.read_text()))


def read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        (Path("/proc/sys") / name).write_text(value + "\n")


def _chains(tool: str, table: str) -> list[str]:
    result = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("-N ")]


def _all_chains() -> dict[str, list[str]]:
    return {f"{tool}/{table}": _chains(tool, table) for tool in IPTABLES for table in TABLES}


def _netns() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.exists() else []


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def snapshot() -> Snapshot:
    return Snapshot(
        sysctls={name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None},
        chains=_all_chains(),
        netns=_netns(),
        links=_links(),
    )


def prepare_network() -> None:
    """Pod traffic crossing the bridge must see iptables (Service DNAT) and be forwarded."""
    write_sysctl("net/ipv4/ip_forward", "1")
    write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
    write_sysctl("net/bridge/bridge-nf-call-ip6tables", "1")


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point.startswith(prefix) or mount_point == prefix[:-1]:
            found.append(mount_point)
    return found


def unmount_under(root: Path) -> None:
    for _ in range(3):
        mounts = mounts_under(root)
        if not mounts:
            return
        for mount_point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", mount_point], capture_output=True, check=False)
    for mount_point in sorted(mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)


def loops_under(root: Path) -> list[str]:
    """Loop devices backed by a file under root, and loop devices stacked on those.

    The chaos CSI driver backs volumes with files under the state directory. For a Block
    volume the kubelet also keeps a loop device of its own open on the device node it was
    given; once that node's bind mount is gone its path reads "/", so such a loop is known by
    its backing inode: the node of one of ours.
    """
    prefix = str(root.resolve()) + "/"
    listing = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-MAJ:MIN,BACK-INO,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = []
    for line in listing.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4 and fields[2].isdigit():
            major, _, minor = fields[1].partition(":")
            rows.append((fields[0], os.makedev(int(major), int(minor)), int(fields[2]), fields[3].strip()))
    found = [name for name, _, _, path in rows if path.startswith(prefix)]
    while True:
        nodes = set()
        for name in found:
            with contextlib.suppress(OSError):
                node = os.stat(name)
                nodes.add((node.st_dev, node.st_ino))
        stacked = [name for name, dev, ino, _ in rows if (dev, ino) in nodes and name not in found]
        if not stacked:
            return found
        found += stacked


def detach_loops_under(root: Path, timeout: float = 10) -> None:
    """Detach them, the stacked ones first; a busy one is freed by the kernel when its last
    user lets go, so wait until none is listed any more."""
    deadline = time.monotonic() + timeout
    while (loops := loops_under(root)) and time.monotonic() < deadline:
        for device in reversed(loops):
            subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)
        time.sleep(0.2)


def remove_netns(names: list[str]) -> None:
    for name in names:
        path = NETNS_DIR / name
        subprocess.run(["umount", str(path)], capture_output=True, check=False)
        path.unlink(missing_ok=True)


def _delete_chains(tool: str, table: str, keep: set[str]) -> None:
    """Remove chains we added: first every jump into them, then flush, then delete."""
    ours = [c for c in _chains(tool, table) if OUR_CHAIN.match(c) and c not in keep]
    if not ours:
        return
    rules = subprocess.run(
        [tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
    ).stdout
    for rule in rules.splitlines():
        parts = rule.split()
        if (
            parts[:1] == ["-A"]
            and parts[1] not in ours
            and "-j" in parts
            and parts[parts.index("-j") + 1] in ours
        ):
            subprocess.run([tool, "-w", "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
    for chain in ours:
        subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True, check=False)
    for chain in ours:
        subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True, check=False)


def _kubepods_cgroups() -> list[Path]:
    return sorted(Path("/sys/fs/cgroup").glob("*/kubepods*"))


def remove_cgroups() -> None:
    """cgroup v1: the kubelet made /kubepods in every hierarchy; remove the empty tree bottom-up."""
    for top in _kubepods_cgroups():
        # Bottom-up; os.walk skips directories that vanish while it walks (the kubelet may still
        # be removing its own), where Path.rglob raises.
        for directory, _, _ in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(directory)  # cgroupfs allows rmdir while the control files are "inside"


def remove_container_log_links(state: Path) -> None:
    if not CONTAINER_LOG_LINKS.exists():
        return
    prefix = str(state.resolve())
    for link in CONTAINER_LOG_LINKS.iterdir():
        if link.is_symlink() and str(link.readlink()).startswith(prefix):
            link.unlink()


def restore(before: Snapshot | None, state: Path) -> None:
    added_netns = [n for n in _netns() if n.startswith("cni-") and (before is None or n not in before.netns)]
    remove_netns(added_netns)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    for tool in IPTABLES:
        for table in TABLES:
            keep = set(before.chains.get(f"{tool}/{table}", [])) if before else set()
            _delete_chains(tool, table, keep)
    if before:
        for name, value in before.sysctls.items():
            write_sysctl(name, value)
    remove_cgroups()
    remove_container_log_links(state)


def leftovers(state: Path, before: Snapshot | None) -> list[str]:
    """Everything of ours still on the host; empty means `down` was clean."""
    from .processes import processes_mentioning

    found: list[str] = []
    found += [f"process {pid}" for pid in processes_mentioning(str(state.resolve()))]
    found += [f"mount {m}" for m in mounts_under(state)]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"bridge {BRIDGE}")
    found += [
        f"netns {n}" for n in _netns() if n.startswith("cni-") and (before is None or n not in before.netns)
    ]
    known_links = set(before.links) if before else set()
    found += [f"link {name}" for name in _links() if name.startswith("veth") and name not in known_links]
    for key, chains in _all_chains().items():
        keep = set(before.chains.get(key, [])) if before else set()
        found += [f"chain {key}/{c}" for c in chains if OUR_CHAIN.match(c) and c not in keep]
    found += [f"cgroup {p}" for p in _kubepods_cgroups()]
    found += [f"loop {device}" for device in loops_under(state)]
    if before:
        for name, value in before.sysctls.items():
            if read_sysctl(name) != value:
                found.append(f"sysctl {name}={read_sysctl(name)} (was {value})")
    return found

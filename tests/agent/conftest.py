"""Real-storage fixtures for the agent tests: loop devices, filesystems, tmpfs, a FUSE server.

Every fixture undoes what it did in a `finally`, whatever the test did: unmount (lazily if
busy), detach the loop device, stop the FUSE server (which aborts its connection, so nothing
stays in D state). The agent always runs as a separate process, as it does in a pod.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from volprobe.contract.report import MAX_REPORT_BYTES, Report, decode_report

HERE = Path(__file__).parent
MIB = 1 << 20


def require(tool: str) -> None:
    """Fail, never skip: a tier that quietly shrinks when a tool is missing proves nothing."""
    if os.geteuid() != 0:
        pytest.fail("the agent tier needs root (loop devices, mounts): run it as root, as `make test` does")
    if shutil.which(tool) is None and not os.path.exists(tool):
        pytest.fail(f"{tool} is missing: `make deps` installs it")


@pytest.fixture(autouse=True)
def as_root() -> None:
    require("losetup")


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def is_mounted(path: Path) -> bool:
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        return any(line.split()[4] == wanted for line in mounts)


def unmount(path: Path) -> None:
    """Unmount, lazily if something still holds it; never leaves `path` mounted."""
    for attempt in (["umount", str(path)], ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(attempt, capture_output=True, check=False)
    if is_mounted(path):
        raise RuntimeError(f"{path} is still mounted")


# -- running the agent ---------------------------------------------------------------------------


@dataclass
class AgentRun:
    report: Report
    raw: str
    stdout: str
    stderr: str
    returncode: int


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "volprobe", "probe", *args]


def check_report_text(raw: str) -> Report:
    """Every report the tests see must fit the limit and parse on the controller's side."""
    assert len(raw.encode()) <= MAX_REPORT_BYTES
    return decode_report(raw)


def run_agent(
    *args: str, result: Path, env: dict[str, str] | None = None, kind: str = "mount", timeout: float = 60
) -> AgentRun:
    """Run `volprobe probe KIND ARGS… --result-file RESULT` in a new process."""
    with contextlib.suppress(FileNotFoundError):
        result.unlink()
    environ = {**os.environ, **(env or {})}
    done = subprocess.run(
        agent_command(kind, *args, "--result-file", str(result)),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    raw = result.read_text()
    report = check_report_text(raw)
    assert done.stdout.startswith(f"volprobe: {report.verdict.value} "), done.stdout
    return AgentRun(report, raw, done.stdout, done.stderr, done.returncode)


# -- loop devices and filesystems --------------------------------------------------------------


@dataclass
class LoopDevice:
    image: Path
    device: str = ""

    def attach(self) -> None:
        self.device = sh("losetup", "--find", "--show", str(self.image))

    def detach(self) -> None:
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
            self.device = ""


@dataclass
class LoopFilesystem:
    """A filesystem on a loop device, mounted at `mountpoint`."""

    fstype: str
    loop: LoopDevice
    mountpoint: Path
    options: list[str] = field(default_factory=list)

    def mount(self, *options: str) -> None:
        args = ["mount", "-t", self.fstype]
        if options:
            args += ["-o", ",".join(options)]
        sh(*args, self.loop.device, str(self.mountpoint))

    def unmount(self) -> None:
        unmount(self.mountpoint)

    def remount(self) -> None:
        """Unmount and mount again: the page cache for the filesystem is gone afterwards."""
        self.unmount()
        sh("blockdev", "--flushbufs", self.loop.device)
        self.mount()

    def corrupt_on_disk(self, relative: str, offset: int) -> int:
        """Flip one byte of a file *under* the filesystem, in the loop image, while unmounted.

        This is silent corruption as a disk would cause it: the filesystem's own metadata is
        untouched, so nothing but the agent's checksum can notice. Returns the byte's value.
        """
        physical = physical_offset(self.mountpoint / relative, offset)
        self.unmount()
        with open(self.loop.image, "r+b") as image:
            image.seek(physical)
            original = image.read(1)[0]
            image.seek(physical)
            image.write(bytes([original ^ 0x01]))
            image.flush()
            os.fsync(image.fileno())
        sh("blockdev", "--flushbufs", self.loop.device)
        self.mount()
        return original


FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_HEADER = struct.Struct("=QQLLLL")
FIEMAP_EXTENT = struct.Struct("=QQQ2QL3L")


def physical_offset(path: Path, logical: int) -> int:
    """Byte offset on the block device of byte `logical` of a file (FIEMAP ioctl)."""
    count = 64
    request = bytearray(FIEMAP_HEADER.pack(0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, count, 0))
    request += bytes(FIEMAP_EXTENT.size * count)
    with open(path, "rb") as handle:
        fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, request)
    mapped = FIEMAP_HEADER.unpack_from(request)[3]
    for index in range(mapped):
        start, physical, length, *_ = FIEMAP_EXTENT.unpack_from(
            request, FIEMAP_HEADER.size + index * FIEMAP_EXTENT.size
        )
        if start <= logical < start + length:
            return int(physical + logical - start)
    raise AssertionError(f"byte {logical} of {path} is not mapped")


def make_image(path: Path, size: int, fill: int = 0) -> None:
    with open(path, "wb") as image:
        if fill:
            chunk = bytes([fill]) * MIB
            for _ in range(size // MIB):
                image.write(chunk)
        else:
            image.truncate(size)


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[LoopDevice]:
    """A 16 MiB loop device filled with 0xA5 (so untouched bytes are recognisable)."""
    loop = LoopDevice(tmp_path / "block.img")
    make_image(loop.image, 16 * MIB, fill=0xA5)
    try:
        loop.attach()
        yield loop
    finally:
        if loop.device:
            subprocess.run(["blockdev", "--setrw", loop.device], capture_output=True, check=False)
        loop.detach()
        loop.image.unlink(missing_ok=True)


MKFS = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f"]}
SIZES = {"ext4": 64 * MIB, "xfs": 320 * MIB}  # xfs refuses filesystems under 300 MB


@pytest.fixture(params=["ext4", "xfs"])
def loop_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LoopFilesystem]:
    fstype: str = request.param
    require(MKFS[fstype][0])
    loop = LoopDevice(tmp_path / f"{fstype}.img")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    make_image(loop.image, SIZES[fstype])
    filesystem = LoopFilesystem(fstype, loop, mountpoint)
    try:
        loop.attach()
        sh(*MKFS[fstype], loop.device)
        filesystem.mount()
        yield filesystem
    finally:
        unmount(mountpoint)
        loop.detach()
        loop.image.unlink(missing_ok=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    try:
        sh("mount", "-t", "tmpfs", "-o", "size=32m", "volprobe-test", str(mountpoint))
        yield mountpoint
    finally:
        unmount(mountpoint)


# -- FUSE ------------------------------------------------------------------------------------------


class FuseFs:
    """The fusefs.py server in its own process, mounted at `mountpoint`, steered over stdin."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.server = subprocess.Popen(
            [sys.executable, str(HERE / "fusefs.py"), str(mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.agents: list[subprocess.Popen[str]] = []
        self._expect("ready")

    def control(self, command: str) -> None:
        assert self.server.stdin is not None
        self.server.stdin.write(command + "\n")
        self.server.stdin.flush()
        self._expect("ok")

    def _expect(self, word: str) -> None:
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], 10)
        line = self.server.stdout.readline().strip() if ready else "<nothing>"
        if line != word:
            raise RuntimeError(f"FUSE server said {line!r}, expected {word!r}")

    def close(self) -> None:
        """Release hung requests, unmount, stop the server; then reap every agent we started."""
        if self.server.poll() is None:
            with contextlib.suppress(Exception):
                self.control("release")
        unmount(self.mountpoint)
        if self.server.stdin is not None:
            with contextlib.suppress(OSError):
                self.server.stdin.close()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()  # closing /dev/fuse aborts the connection: no request stays stuck
            self.server.wait()
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
            agent.wait(timeout=30)


@pytest.fixture
def fusefs(tmp_path: Path) -> Iterator[FuseFs]:
    require("/dev/fuse")
    mountpoint = tmp_path / "fuse"
    mountpoint.mkdir()
    filesystem: FuseFs | None = None
    try:
        filesystem = FuseFs(mountpoint)
        yield filesystem
    finally:
        if filesystem is not None:
            filesystem.close()
        unmount(mountpoint)


def wait_for_report(path: Path, limit: float) -> tuple[Report, float]:
    """Poll for a complete report file; (report, seconds waited). Fails after `limit` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if path.exists() and path.stat().st_size:
            raw = path.read_text()
            with contextlib.suppress(Exception):
                return check_report_text(raw), time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"no report in {path} after {limit}s")


def thread_states(pid: int) -> list[str]:
    """The scheduler state letter of every thread of a process (D = uninterruptible sleep)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
    return states

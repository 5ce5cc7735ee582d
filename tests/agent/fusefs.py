"""A tiny in-memory FUSE filesystem spoken directly over /dev/fuse, for fault injection.

Run as its own process (`python fusefs.py MOUNTPOINT`): it mounts itself (mount(2) through
ctypes, no libfuse), prints `ready`, and serves requests. The test steers it with one command per
line on stdin, each answered by `ok` on stdout:

* `hang OP…`    park requests of these kinds (e.g. `hang write`) without answering — the caller
                sits in uninterruptible sleep, exactly like IO on storage that went away;
* `eio OP…`     answer requests of these kinds with EIO;
* `nodirect`    refuse O_DIRECT opens with EINVAL, like filesystems without direct IO;
* `nodirectio`  accept O_DIRECT opens but refuse the IO itself with EINVAL (the kernel passes
                the file's open flags with every read and write);
* `normal`      back to normal (parked requests stay parked);
* `release`     answer every parked request with EIO and go back to normal.

Closing stdin (or killing the process) closes /dev/fuse, which makes the kernel abort the
connection: whatever is still waiting on it fails with ENOTCONN. So nothing can stay stuck in D
state once the test tears the server down, even if `release` was never sent.

Only the protocol subset the agent (and `ls`, `cat`, `rm`) need is implemented; everything else
is answered ENOSYS, which the kernel handles gracefully (it stops asking).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

# Opcodes (include/uapi/linux/fuse.h).
LOOKUP, FORGET, GETATTR, SETATTR = 1, 2, 3, 4
MKNOD, MKDIR, UNLINK, RMDIR, RENAME = 8, 9, 10, 11, 12
OPEN, READ, WRITE, STATFS, RELEASE = 14, 15, 16, 17, 18
FSYNC, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR = 20, 25, 26, 27, 28, 29, 30
ACCESS, CREATE, INTERRUPT, DESTROY, BATCH_FORGET, RENAME2 = 34, 35, 36, 38, 42, 45

OP_NAMES = {
    "lookup": LOOKUP, "getattr": GETATTR, "setattr": SETATTR, "mkdir": MKDIR, "unlink": UNLINK,
    "rename": RENAME, "open": OPEN, "read": READ, "write": WRITE, "release": RELEASE,
    "fsync": FSYNC, "flush": FLUSH, "fsyncdir": FSYNCDIR, "create": CREATE, "readdir": READDIR,
    "opendir": OPENDIR, "statfs": STATFS,
}  # fmt: skip

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")
ATTR_OUT = struct.Struct("<QII")
OPEN_OUT = struct.Struct("<QII")
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
CREATE_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
MKNOD_IN = struct.Struct("<IIII")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")
WRITE_OUT = struct.Struct("<II")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")
DIRENT = struct.Struct("<QQII")

FATTR_MODE, FATTR_SIZE = 1, 8
MAX_WRITE = 128 * 1024
ROOT = 1
CAPACITY = 1 << 30


@dataclass
class Node:
    mode: int
    data: bytearray = field(default_factory=bytearray)
    children: dict[bytes, int] = field(default_factory=dict)
    mtime: float = field(default_factory=time.time)


class FuseServer:
    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self.fd = os.open("/dev/fuse", os.O_RDWR)
        self.nodes: dict[int, Node] = {ROOT: Node(stat.S_IFDIR | 0o755)}
        self.next_ino = 2
        self.lock = threading.Lock()
        self.hang: set[int] = set()
        self.eio: set[int] = set()
        self.nodirect = False
        self.nodirectio = False
        self.parked: list[int] = []

    def mount(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        options = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
        flags = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
        if libc.mount(b"volprobe-test", self.mountpoint.encode(), b"fuse", flags, options) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), self.mountpoint)

    # -- control ---------------------------------------------------------------------------

    def command(self, line: str) -> None:
        words = line.split()
        if words[0] not in ("hang", "eio", "nodirect", "nodirectio", "normal", "release"):
            raise ValueError(line)
        with self.lock:
            if words[0] == "hang":
                self.hang = {OP_NAMES[word] for word in words[1:]}
            elif words[0] == "eio":
                self.eio = {OP_NAMES[word] for word in words[1:]}
            elif words[0] == "nodirect":
                self.nodirect = True
            elif words[0] == "nodirectio":
                self.nodirectio = True
            elif words[0] in ("normal", "release"):
                self.hang, self.eio, self.nodirect, self.nodirectio = set(), set(), False, False
            if words[0] == "release":
                parked, self.parked = self.parked, []
                for unique in parked:
                    self.reply_error(unique, errno.EIO)

    # -- protocol ----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                request = os.read(self.fd, MAX_WRITE + 64 * 1024)
            except OSError as error:
                if error.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                if error.errno == errno.ENODEV:
                    return  # unmounted
                raise
            length, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(request)
            body = request[IN_HEADER.size : length]
            if opcode in (FORGET, BATCH_FORGET, INTERRUPT):
                continue  # no reply expected; interrupts of parked requests are ignored on purpose
            with self.lock:
                if opcode in self.hang:
                    self.parked.append(unique)
                    continue
                if opcode in self.eio:
                    self.reply_error(unique, errno.EIO)
                    continue
                try:
                    reply = self.handle(opcode, nodeid, body)
                except OSError as error:
                    self.reply_error(unique, error.errno or errno.EIO)
                    continue
                self.reply(unique, reply)
            if opcode == DESTROY:
                return

    def reply(self, unique: int, payload: bytes) -> None:
        self._send(OUT_HEADER.pack(OUT_HEADER.size + len(payload), 0, unique) + payload)

    def reply_error(self, unique: int, code: int) -> None:
        self._send(OUT_HEADER.pack(OUT_HEADER.size, -code, unique))

    def _send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENODEV):  # request gone / unmounted
                raise

    def handle(self, opcode: int, nodeid: int, body: bytes) -> bytes:
        if opcode == INIT:
            _, _, readahead, _ = INIT_IN.unpack_from(body)
            return INIT_OUT.pack(7, 31, readahead, 0, 16, 12, MAX_WRITE, 1, 0, 0, 0)
        if opcode == LOOKUP:
            return self.entry(self.child(nodeid, body.rstrip(b"\0")))
        if opcode == GETATTR:
            return ATTR_OUT.pack(0, 0, 0) + self.attr(nodeid)
        if opcode == SETATTR:
            valid, *_rest = SETATTR_IN.unpack_from(body)
            node = self.node(nodeid)
            if valid & FATTR_SIZE:
                size = SETATTR_IN.unpack_from(body)[3]
                del node.data[size:]
                node.data.extend(bytes(size - len(node.data)))
            if valid & FATTR_MODE:
                node.mode = stat.S_IFMT(node.mode) | (SETATTR_IN.unpack_from(body)[11] & 0o7777)
            return ATTR_OUT.pack(0, 0, 0) + self.attr(nodeid)
        if opcode == MKDIR:
            mode, _ = MKDIR_IN.unpack_from(body)
            name = body[MKDIR_IN.size :].rstrip(b"\0")
            return self.entry(self.create_node(nodeid, name, stat.S_IFDIR | (mode & 0o7777)))
        if opcode == MKNOD:
            mode, *_ = MKNOD_IN.unpack_from(body)
            name = body[MKNOD_IN.size :].rstrip(b"\0")
            return self.entry(self.create_node(nodeid, name, stat.S_IFREG | (mode & 0o7777)))
        if opcode == CREATE:
            flags, mode, _, _ = CREATE_IN.unpack_from(body)
            self.check_direct(flags)
            name = body[CREATE_IN.size :].rstrip(b"\0")
            ino = self.create_node(nodeid, name, stat.S_IFREG | (mode & 0o7777))
            return self.entry(ino) + OPEN_OUT.pack(ino, 0, 0)
        if opcode in (OPEN, OPENDIR):
            self.check_direct(struct.unpack_from("<I", body)[0])
            if opcode == OPEN and struct.unpack_from("<I", body)[0] & os.O_TRUNC:
                self.node(nodeid).data.clear()
            return OPEN_OUT.pack(nodeid, 0, 0)
        if opcode == READ:
            fh, offset, size, _, _, flags, _ = READ_IN.unpack_from(body)
            self.check_direct_io(flags)
            return bytes(self.node(fh).data[offset : offset + size])
        if opcode == WRITE:
            fh, offset, size, _, _, flags, _ = WRITE_IN.unpack_from(body)
            self.check_direct_io(flags)
            data = self.node(fh).data
            chunk = body[WRITE_IN.size : WRITE_IN.size + size]
            if len(data) < offset:
                data.extend(bytes(offset - len(data)))
            data[offset : offset + size] = chunk
            return WRITE_OUT.pack(size, 0)
        if opcode in (UNLINK, RMDIR):
            name = body.rstrip(b"\0")
            self.child(nodeid, name)
            del self.node(nodeid).children[name]
            return b""
        if opcode in (RENAME, RENAME2):
            layout = RENAME_IN if opcode == RENAME else RENAME2_IN
            newdir = layout.unpack_from(body)[0]
            if opcode == RENAME2 and layout.unpack_from(body)[1]:
                raise OSError(errno.EINVAL, "rename flags")
            old, new = body[layout.size :].split(b"\0")[:2]
            ino = self.child(nodeid, old)
            del self.node(nodeid).children[old]
            self.node(newdir).children[new] = ino
            return b""
        if opcode == READDIR:
            fh, offset, size, *_ = READ_IN.unpack_from(body)
            names = [b".", b"..", *self.node(fh).children]
            out = b""
            for index, name in enumerate(names[offset:], start=offset + 1):
                ino = self.node(fh).children.get(name, fh)
                kind = stat.S_IFMT(self.node(ino).mode) >> 12
                entry = DIRENT.pack(ino, index, len(name), kind) + name
                entry += b"\0" * (-len(entry) % 8)
                if len(out) + len(entry) > size:
                    break
                out += entry
            return out
        if opcode == STATFS:
            used = sum(len(node.data) for node in self.nodes.values()) // 4096
            blocks = CAPACITY // 4096
            return STATFS_OUT.pack(blocks, blocks - used, blocks - used, 1 << 20, 1 << 20, 4096, 255, 4096, 0)
        if opcode in (RELEASE, RELEASEDIR, FLUSH, FSYNC, FSYNCDIR, ACCESS, DESTROY):
            return b""
        raise OSError(errno.ENOSYS, "not implemented")

    def check_direct(self, flags: int) -> None:
        if self.nodirect and flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "no O_DIRECT here")

    def check_direct_io(self, flags: int) -> None:
        if self.nodirectio and flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "no O_DIRECT IO here")

    def node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise OSError(errno.ENOENT, "no such node") from None

    def child(self, parent: int, name: bytes) -> int:
        try:
            return self.node(parent).children[name]
        except KeyError:
            raise OSError(errno.ENOENT, "no such entry") from None

    def create_node(self, parent: int, name: bytes, mode: int) -> int:
        if name in self.node(parent).children:
            raise OSError(errno.EEXIST, "exists")
        ino = self.next_ino
        self.next_ino += 1
        self.nodes[ino] = Node(mode)
        self.node(parent).children[name] = ino
        return ino

    def attr(self, ino: int) -> bytes:
        node = self.node(ino)
        seconds = int(node.mtime)
        nlink = 2 if stat.S_ISDIR(node.mode) else 1
        size = len(node.data)
        return ATTR.pack(
            ino,
            size,
            (size + 511) // 512,
            seconds,
            seconds,
            seconds,
            0,
            0,
            0,
            node.mode,
            nlink,
            0,
            0,
            0,
            4096,
            0,
        )

    def entry(self, ino: int) -> bytes:
        return ENTRY_OUT.pack(ino, 0, 0, 0, 0, 0) + self.attr(ino)


def main() -> None:
    server = FuseServer(sys.argv[1])
    server.mount()

    def control() -> None:
        for line in sys.stdin:
            if line.strip():
                server.command(line.strip())
                print("ok", flush=True)
        os._exit(0)  # stdin closed: the test is done with us; exiting aborts the connection

    threading.Thread(target=control, daemon=True).start()
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()

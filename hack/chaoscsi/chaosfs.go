package main

import (
	"context"
	"fmt"
	"log"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The data path of a Filesystem volume: a FUSE passthrough mounted at the staging path, over
// the volume's ext4 (mounted privately by the driver). Every operation asks the fault table
// first, so a test can make the storage under a running pod fail, hang, slow down or lie.

// faultHook decides what happens to one data-path operation of a volume.
type faultHook func(op string) *Fault

type chaosNode struct {
	*fs.LoopbackNode
	hook faultHook
}

var (
	_ fs.NodeWrapChilder = (*chaosNode)(nil)
	_ fs.NodeOpener      = (*chaosNode)(nil)
	_ fs.NodeCreater     = (*chaosNode)(nil)
)

func (n *chaosNode) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &chaosNode{LoopbackNode: ops.(*fs.LoopbackNode), hook: n.hook}
}

// inject applies the fault for op, if any: it returns the errno to fail with (0: proceed).
func inject(ctx context.Context, hook faultHook, op string) (*Fault, syscall.Errno) {
	f := hook(op)
	if f == nil {
		return nil, 0
	}
	switch f.Action {
	case ActionErrno:
		return f, f.errno
	case ActionHang, ActionDelay:
		if !f.Wait(ctx, f.Interruptible) {
			return f, syscall.EINTR
		}
	}
	return f, 0
}

func (n *chaosNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "lookup"); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *chaosNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "getattr"); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Getattr(ctx, unwrap(f), out)
}

func (n *chaosNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "setattr"); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Setattr(ctx, unwrap(f), in, out)
}

func (n *chaosNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	op := "open"
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		op = "openw"
	}
	if _, errno := inject(ctx, n.hook, op); errno != 0 {
		return nil, 0, errno
	}
	// O_DIRECT is the caller's business with this FUSE file (the kernel sends its IO to us
	// uncached); the backing file is opened buffered so our buffers need no alignment.
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_DIRECT)
	if errno != 0 {
		return nil, 0, errno
	}
	return &chaosFile{inner: fh, hook: n.hook}, fuseFlags, 0
}

func (n *chaosNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "create"); errno != 0 {
		return nil, nil, 0, errno
	}
	inode, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags&^syscall.O_DIRECT, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return inode, &chaosFile{inner: fh, hook: n.hook}, fuseFlags, 0
}

func (n *chaosNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "mkdir"); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *chaosNode) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "mknod"); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *chaosNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "unlink"); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *chaosNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "rmdir"); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *chaosNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "rename"); errno != 0 {
		return errno
	}
	// The loopback node resolves the new parent's path through its own type.
	if parent, ok := newParent.(*chaosNode); ok {
		newParent = parent.LoopbackNode
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

func (n *chaosNode) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "link"); errno != 0 {
		return nil, errno
	}
	if node, ok := target.(*chaosNode); ok {
		target = node.LoopbackNode
	}
	return n.LoopbackNode.Link(ctx, target, name, out)
}

func (n *chaosNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if _, errno := inject(ctx, n.hook, "symlink"); errno != 0 {
		return nil, errno
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *chaosNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if _, errno := inject(ctx, n.hook, "statfs"); errno != 0 {
		return errno
	}
	return n.LoopbackNode.Statfs(ctx, out)
}

// chaosFile wraps an open backing file. It deliberately does not offer the backing file
// descriptor for kernel passthrough (FOPEN_PASSTHROUGH), which would send reads and writes
// around us and the faults.
type chaosFile struct {
	inner fs.FileHandle
	hook  faultHook
}

func unwrap(f fs.FileHandle) fs.FileHandle {
	if cf, ok := f.(*chaosFile); ok {
		return cf.inner
	}
	return f
}

var (
	_ fs.FileReader    = (*chaosFile)(nil)
	_ fs.FileWriter    = (*chaosFile)(nil)
	_ fs.FileFsyncer   = (*chaosFile)(nil)
	_ fs.FileFlusher   = (*chaosFile)(nil)
	_ fs.FileReleaser  = (*chaosFile)(nil)
	_ fs.FileGetattrer = (*chaosFile)(nil)
	_ fs.FileSetattrer = (*chaosFile)(nil)
	_ fs.FileLseeker   = (*chaosFile)(nil)
	_ fs.FileAllocater = (*chaosFile)(nil)
)

func (f *chaosFile) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fault, errno := inject(ctx, f.hook, "read")
	if errno != 0 {
		return nil, errno
	}
	reader, ok := f.inner.(fs.FileReader)
	if !ok {
		return nil, syscall.ENOTSUP
	}
	result, errno := reader.Read(ctx, buf, off)
	if errno != 0 {
		return nil, errno
	}
	// Read into our buffer rather than splice from the backing file: the data can be changed
	// on its way, and a 1 MiB read plus its header would not fit a pipe anyway.
	data, status := result.Bytes(buf)
	result.Done()
	if !status.Ok() {
		return nil, syscall.Errno(status)
	}
	if fault != nil && fault.Action == ActionFlip {
		flipBits(data)
	}
	return fuse.ReadResultData(data), 0
}

// flipBits turns the lowest bit of the first byte of every 512-byte sector: silent corruption
// that any checksum notices, on every block the reader asked for.
func flipBits(data []byte) {
	for i := 0; i < len(data); i += 512 {
		data[i] ^= 1
	}
}

func (f *chaosFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if _, errno := inject(ctx, f.hook, "write"); errno != 0 {
		return 0, errno
	}
	writer, ok := f.inner.(fs.FileWriter)
	if !ok {
		return 0, syscall.ENOTSUP
	}
	return writer.Write(ctx, data, off)
}

func (f *chaosFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if _, errno := inject(ctx, f.hook, "fsync"); errno != 0 {
		return errno
	}
	if syncer, ok := f.inner.(fs.FileFsyncer); ok {
		return syncer.Fsync(ctx, flags)
	}
	return syscall.ENOTSUP
}

func (f *chaosFile) Flush(ctx context.Context) syscall.Errno {
	if _, errno := inject(ctx, f.hook, "flush"); errno != 0 {
		return errno
	}
	if flusher, ok := f.inner.(fs.FileFlusher); ok {
		return flusher.Flush(ctx)
	}
	return 0
}

func (f *chaosFile) Release(ctx context.Context) syscall.Errno {
	if releaser, ok := f.inner.(fs.FileReleaser); ok {
		return releaser.Release(ctx)
	}
	return 0
}

func (f *chaosFile) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if getter, ok := f.inner.(fs.FileGetattrer); ok {
		return getter.Getattr(ctx, out)
	}
	return syscall.ENOTSUP
}

func (f *chaosFile) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if setter, ok := f.inner.(fs.FileSetattrer); ok {
		return setter.Setattr(ctx, in, out)
	}
	return syscall.ENOTSUP
}

func (f *chaosFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	if seeker, ok := f.inner.(fs.FileLseeker); ok {
		return seeker.Lseek(ctx, off, whence)
	}
	return 0, syscall.ENOTSUP
}

func (f *chaosFile) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if _, errno := inject(ctx, f.hook, "write"); errno != 0 {
		return errno
	}
	if allocater, ok := f.inner.(fs.FileAllocater); ok {
		return allocater.Allocate(ctx, off, size, mode)
	}
	return syscall.ENOTSUP
}

// mountChaosFS serves backing (a directory) at mountPoint through the fault hook.
func mountChaosFS(backing, mountPoint, name string, hook faultHook) (*fuse.Server, error) {
	var st unix.Stat_t
	if err := unix.Stat(backing, &st); err != nil {
		return nil, err
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	node := &chaosNode{LoopbackNode: &fs.LoopbackNode{RootData: root}, hook: hook}
	root.RootNode = node
	second := time.Second
	server, err := fs.Mount(mountPoint, node, &fs.Options{
		MountOptions: fuse.MountOptions{
			// Probe pods write as an unprivileged user; the kernel checks modes for us.
			AllowOther:        true,
			Options:           []string{"default_permissions"},
			FsName:            "chaoscsi:" + name,
			Name:              "chaoscsi",
			DirectMount:       true,
			DirectMountStrict: true,
			MaxWrite:          1 << 20,
			Logger:            log.New(log.Writer(), fmt.Sprintf("fuse %s: ", name), log.LstdFlags),
		},
		EntryTimeout: &second,
		AttrTimeout:  &second,
	})
	if err != nil {
		return nil, err
	}
	return server, nil
}

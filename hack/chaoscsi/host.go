package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// run executes a host tool (losetup, mkfs.ext4, resize2fs) and returns its trimmed output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return text, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, text)
	}
	return text, nil
}

// attachLoop makes a loop device for an image file.
func attachLoop(image string) (string, error) {
	return run("losetup", "--find", "--show", image)
}

func detachLoop(device string) error {
	if device == "" {
		return nil
	}
	_, err := run("losetup", "--detach", device)
	if err != nil && strings.Contains(err.Error(), "No such device") {
		return nil
	}
	return err
}

// loopsOf lists the loop devices whose backing file is under dir (left over by a crash).
func loopsOf(dir string) []string {
	out, err := run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE")
	if err != nil {
		return nil
	}
	var found []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && strings.HasPrefix(fields[1], dir+"/") {
			found = append(found, fields[0])
		}
	}
	return found
}

func makeExt4(target string) error {
	// No reserved blocks: a probe volume belongs to an unprivileged writer.
	_, err := run("mkfs.ext4", "-q", "-F", "-m", "0", target)
	return err
}

// mountPoints lists mount points at or under prefix, deepest first.
func mountPoints(prefix string) []string {
	file, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer file.Close()
	var found []string
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 5 {
			continue
		}
		point := unescapeMount(fields[4])
		if point == prefix || strings.HasPrefix(point, prefix+"/") {
			found = append(found, point)
		}
	}
	// Deepest first, so nested mounts go before their parents.
	for i := 0; i < len(found); i++ {
		for j := i + 1; j < len(found); j++ {
			if len(found[j]) > len(found[i]) {
				found[i], found[j] = found[j], found[i]
			}
		}
	}
	return found
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func isMountPoint(path string) bool {
	for _, point := range mountPoints(path) {
		if point == path {
			return true
		}
	}
	return false
}

// unmount takes a mount point away; a busy one is detached lazily so nothing can pin the
// driver (the last user's close finishes the job).
func unmount(path string) error {
	for attempt := 0; attempt < 5 && isMountPoint(path); attempt++ {
		err := unix.Unmount(path, 0)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EBUSY) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if isMountPoint(path) {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("lazy unmount %s: %w", path, err)
		}
	}
	return nil
}

func bindMount(source, target string, readOnly bool) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", source, target, err)
	}
	if readOnly {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
		if err := unix.Mount("", target, "", flags, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return fmt.Errorf("remount %s read-only: %w", target, err)
		}
	}
	return nil
}

// FIFREEZE and FITHAW from linux/fs.h (_IOWR('X', 119/120, int)); x/sys/unix lacks them.
const (
	ioctlFreeze = 0xC0045877
	ioctlThaw   = 0xC0045878
)

// freeze holds a filesystem still (FIFREEZE) while fn copies its device, so a snapshot of a
// volume that is in use is consistent.
func freeze(mountPoint string, fn func() error) error {
	dir, err := os.Open(mountPoint)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.IoctlSetInt(int(dir.Fd()), ioctlFreeze, 0); err != nil {
		return fmt.Errorf("freeze %s: %w", mountPoint, err)
	}
	defer func() { _ = unix.IoctlSetInt(int(dir.Fd()), ioctlThaw, 0) }()
	return fn()
}

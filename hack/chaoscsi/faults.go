package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// Actions a fault can take. RPC operations understand error, hang and delay; data-path
// operations (the FUSE layer) understand errno, hang, delay and flip.
const (
	ActionError = "error" // an RPC returns the gRPC code `code` with `message`
	ActionErrno = "errno" // a filesystem operation returns `errno` (EIO, ENOSPC, EROFS, …)
	ActionHang  = "hang"  // the operation blocks until the fault is lifted
	ActionDelay = "delay" // the operation is delayed by `delayMs`, then runs normally
	ActionFlip  = "flip"  // data returned by a read has bits flipped
)

// opGroups name sets of data-path operations, so a test can say "every write-like operation"
// the way a filesystem that turned read-only refuses them.
var opGroups = map[string][]string{
	"data":   {"read", "write", "fsync"},
	"mutate": {"write", "openw", "create", "mkdir", "mknod", "unlink", "rmdir", "rename", "setattr", "link", "symlink"},
}

// Fault is one injected failure. Empty selectors match anything.
type Fault struct {
	ID     string   `json:"id"`
	Ops    []string `json:"ops"`
	Node   string   `json:"node,omitempty"`
	Volume string   `json:"volume,omitempty"`
	// Namespace selects volumes by the namespace of the claim they were provisioned for.
	Namespace string `json:"namespace,omitempty"`
	Action    string `json:"action"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	Errno     string `json:"errno,omitempty"`
	DelayMs   int    `json:"delayMs,omitempty"`
	// Interruptible hangs on the data path give up when the caller is killed (the kernel sends
	// FUSE an INTERRUPT), like storage mounted with `intr`; by default a hung request holds its
	// caller in uninterruptible sleep until the fault is lifted, like a disk that went silent.
	Interruptible bool `json:"interruptible,omitempty"`
	// Count limits how many operations the fault hits (0: no limit).
	Count int `json:"count,omitempty"`
	Hits  int `json:"hits"`

	ops      []string
	code     codes.Code
	errno    syscall.Errno
	released chan struct{}
}

// Target is what an operation is about, matched against the faults' selectors.
type Target struct {
	Op, Node, Volume, Namespace string
}

var errnos = map[string]syscall.Errno{
	"EIO": unix.EIO, "ENOSPC": unix.ENOSPC, "EROFS": unix.EROFS, "EDQUOT": unix.EDQUOT,
	"EACCES": unix.EACCES, "EPERM": unix.EPERM, "ETIMEDOUT": unix.ETIMEDOUT, "ENOENT": unix.ENOENT,
	"ESTALE": unix.ESTALE, "ENOTCONN": unix.ENOTCONN,
}

func parseCode(name string) (codes.Code, bool) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(c.String(), name) {
			return c, true
		}
	}
	return 0, false
}

// validate fills in the derived fields and rejects faults that could never fire.
func (f *Fault) validate() error {
	if len(f.Ops) == 0 {
		return fmt.Errorf("ops is required")
	}
	f.ops = nil
	for _, op := range f.Ops {
		if op == "" {
			return fmt.Errorf("empty operation name")
		}
		if group, ok := opGroups[op]; ok {
			f.ops = append(f.ops, group...)
		} else {
			f.ops = append(f.ops, op)
		}
	}
	switch f.Action {
	case ActionError:
		name := f.Code
		if name == "" {
			name = "Internal"
		}
		code, ok := parseCode(name)
		if !ok || code == codes.OK {
			return fmt.Errorf("unknown gRPC code %q", f.Code)
		}
		f.code = code
	case ActionErrno:
		errno, ok := errnos[strings.ToUpper(f.Errno)]
		if !ok {
			return fmt.Errorf("unknown errno %q", f.Errno)
		}
		f.errno = errno
	case ActionDelay:
		if f.DelayMs <= 0 {
			return fmt.Errorf("delayMs must be positive")
		}
	case ActionHang, ActionFlip:
	default:
		return fmt.Errorf("unknown action %q", f.Action)
	}
	if f.Count < 0 {
		return fmt.Errorf("count must not be negative")
	}
	// CSI methods are capitalised, data-path operations are not: an action that can never
	// apply to the operations named is a mistake in the test, said at once.
	for _, op := range f.ops {
		rpc := op[0] >= 'A' && op[0] <= 'Z'
		switch {
		case f.Action == ActionError && !rpc:
			return fmt.Errorf("action error applies to CSI calls, not to %q (use errno)", op)
		case f.Action == ActionErrno && rpc:
			return fmt.Errorf("action errno applies to data-path operations, not to %q (use error)", op)
		case f.Action == ActionFlip && op != "read":
			return fmt.Errorf("action flip applies to read only, not to %q", op)
		}
	}
	return nil
}

func (f *Fault) matches(t Target) bool {
	if f.Count > 0 && f.Hits >= f.Count {
		return false
	}
	if f.Node != "" && f.Node != t.Node {
		return false
	}
	if f.Volume != "" && f.Volume != t.Volume {
		return false
	}
	if f.Namespace != "" && f.Namespace != t.Namespace {
		return false
	}
	return slices.Contains(f.ops, t.Op)
}

// rpcMessage is what an RPC error fault says; tests look for it in the cluster's Events.
func (f *Fault) rpcMessage(op string) string {
	if f.Message != "" {
		return f.Message
	}
	return fmt.Sprintf("chaoscsi: injected %s on %s (fault %s)", f.code, op, f.ID)
}

// Faults holds the active faults. Lifting a fault releases every operation it holds.
type Faults struct {
	mu     sync.Mutex
	next   int
	active []*Fault
}

func (e *Faults) Add(f *Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	f.ID = fmt.Sprintf("f%d", e.next)
	f.Hits = 0
	f.released = make(chan struct{})
	e.active = append(e.active, f)
	return nil
}

// Lift removes one fault (or all with id ""); returns how many were lifted.
func (e *Faults) Lift(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	kept, lifted := e.active[:0], 0
	for _, f := range e.active {
		if id == "" || f.ID == id {
			close(f.released)
			lifted++
		} else {
			kept = append(kept, f)
		}
	}
	e.active = kept
	return lifted
}

// List returns copies, so callers can encode them without holding the lock.
func (e *Faults) List() []Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Fault, 0, len(e.active))
	for _, f := range e.active {
		out = append(out, *f)
	}
	return out
}

// Match returns the first fault that applies to t, counts the hit and returns which hit of
// that fault this is (nil, 0: none).
func (e *Faults) Match(t Target) (*Fault, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.active {
		if f.matches(t) {
			f.Hits++
			return f, f.Hits
		}
	}
	return nil, 0
}

// Wait blocks while a hang or delay fault holds an operation. It returns false when the
// caller's context ended first (the operation must then fail), true when the operation may
// proceed. With uninterruptible set, only lifting the fault ends a hang.
func (f *Fault) Wait(ctx context.Context, interruptible bool) bool {
	switch f.Action {
	case ActionHang:
		if !interruptible {
			<-f.released
			return true
		}
		select {
		case <-f.released:
			return true
		case <-ctx.Done():
			return false
		}
	case ActionDelay:
		timer := time.NewTimer(time.Duration(f.DelayMs) * time.Millisecond)
		defer timer.Stop()
		if !interruptible {
			<-timer.C
			return true
		}
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

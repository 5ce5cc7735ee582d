package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             d.nodeID,
		AccessibleTopology: &csi.Topology{Segments: map[string]string{d.topologyKey: d.nodeID}},
	}, nil
}

func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	} {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// dataHook routes a volume's FUSE operations to the fault table.
func (d *Driver) dataHook(v Volume) faultHook {
	return func(op string) *Fault {
		f, hit := d.faults.Match(Target{Op: op, Node: d.nodeID, Volume: v.ID, Namespace: v.PVCNamespace})
		if f != nil && hit <= 3 { // the first few are enough to follow a test in the log
			log.Printf("data %s %s: fault %s (%s), hit %d", op, v.ID, f.ID, f.Action, hit)
		}
		return f
	}
}

func (d *Driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetStagingTargetPath()
	if id == "" || target == "" || req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume id, staging target path and volume capability are required")
	}
	block, err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	unlock := d.lock(id)
	defer unlock()
	v, ok := d.store.Volume(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	if block != v.Block {
		return nil, status.Errorf(codes.InvalidArgument, "volume %s is not a %s volume", id, map[bool]string{true: "block", false: "filesystem"}[block])
	}
	d.mu.Lock()
	existing := d.staged[id]
	d.mu.Unlock()
	if existing != nil {
		if existing.Path == target {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is staged at %s", id, existing.Path)
	}
	st, err := d.stage(v, target)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "stage %s: %v", id, err)
	}
	d.mu.Lock()
	d.staged[id] = st
	d.mu.Unlock()
	return &csi.NodeStageVolumeResponse{}, nil
}

// stage attaches the image to a loop device; a Filesystem volume's ext4 is then mounted
// privately and served at the staging path through the chaos FUSE layer.
func (d *Driver) stage(v Volume, target string) (st *staging, err error) {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, err
	}
	loop, err := attachLoop(d.store.VolumeImage(v.ID))
	if err != nil {
		return nil, err
	}
	st = &staging{Volume: v.ID, Path: target, Loop: loop}
	defer func() {
		if err != nil {
			d.teardown(st)
		}
	}()
	if v.Block {
		return st, nil
	}
	st.Private = filepath.Join(d.stateDir, "mnt", v.ID)
	if err := os.MkdirAll(st.Private, 0o700); err != nil {
		return st, err
	}
	if err := unix.Mount(loop, st.Private, "ext4", unix.MS_NOATIME, ""); err != nil {
		return st, fmt.Errorf("mount %s: %w", loop, err)
	}
	if v.NeedsGrow {
		if _, err := run("resize2fs", loop); err != nil {
			return st, err
		}
		v.NeedsGrow = false
		if err := d.store.PutVolume(v); err != nil {
			return st, err
		}
	}
	server, err := mountChaosFS(st.Private, target, v.ID, d.dataHook(v))
	if err != nil {
		return st, fmt.Errorf("serve %s: %w", target, err)
	}
	st.server = server
	return st, nil
}

// teardown undoes stage, step by step, whatever got done; a FUSE server that cannot be
// unmounted at once (a request held by a fault) is detached lazily and finishes on its own.
func (d *Driver) teardown(st *staging) error {
	var errs []error
	if st.server != nil {
		if err := unmount(st.Path); err != nil {
			errs = append(errs, err)
		}
		done := make(chan struct{})
		go func() { st.server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			log.Printf("FUSE server of %s still busy after unmount; it ends with its last request", st.Volume)
		}
	}
	if st.Private != "" {
		if err := unmount(st.Private); err != nil {
			errs = append(errs, err)
		}
		if err := os.Remove(st.Private); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, err)
		}
	}
	if err := detachLoop(st.Loop); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *Driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetStagingTargetPath()
	if id == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and staging target path are required")
	}
	unlock := d.lock(id)
	defer unlock()
	d.mu.Lock()
	st := d.staged[id]
	d.mu.Unlock()
	if st == nil {
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	if err := d.teardown(st); err != nil {
		return nil, status.Errorf(codes.Internal, "unstage %s: %v", id, err)
	}
	d.mu.Lock()
	delete(d.staged, id)
	d.mu.Unlock()
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" || target == "" || req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume id, target path and volume capability are required")
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.FailedPrecondition, "staging target path is required (the volume must be staged)")
	}
	block, err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()})
	if err != nil {
		return nil, err
	}
	unlock := d.lock(id)
	defer unlock()
	if _, ok := d.store.Volume(id); !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	d.mu.Lock()
	st := d.staged[id]
	d.mu.Unlock()
	if st == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged", id)
	}
	if isMountPoint(target) {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	source := st.Path
	if block {
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
		}
		file, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o600)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
		}
		file.Close()
		source = st.Loop
	} else if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
	}
	if err := bindMount(source, target, req.GetReadonly()); err != nil {
		return nil, status.Errorf(codes.Internal, "publish %s: %v", id, err)
	}
	d.mu.Lock()
	d.published[target] = id
	d.mu.Unlock()
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if id == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	unlock := d.lock(id)
	defer unlock()
	if err := unpublish(target); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublish %s: %v", id, err)
	}
	d.mu.Lock()
	delete(d.published, target)
	d.mu.Unlock()
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func unpublish(target string) error {
	if err := unmount(target); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, where := req.GetVolumeId(), req.GetVolumePath()
	if id == "" || where == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and volume path are required")
	}
	v, ok := d.store.Volume(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	if _, err := os.Stat(where); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", where, err)
	}
	if v.Block {
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Total: v.CapacityBytes},
		}}, nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(where, &fs); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", where, err)
	}
	size := int64(fs.Bsize)
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(fs.Blocks) * size, Available: int64(fs.Bavail) * size, Used: int64(fs.Blocks-fs.Bfree) * size},
		{Unit: csi.VolumeUsage_INODES, Total: int64(fs.Files), Available: int64(fs.Ffree), Used: int64(fs.Files - fs.Ffree)},
	}}, nil
}

// StagedView is a staged volume as the control interface shows it.
type StagedView struct {
	staging
	Published []string `json:"published"`
}

func (d *Driver) Staged() []StagedView {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []StagedView
	for _, st := range d.staged {
		view := StagedView{staging: *st, Published: []string{}}
		for target, id := range d.published {
			if id == st.Volume {
				view.Published = append(view.Published, target)
			}
		}
		sort.Strings(view.Published)
		out = append(out, view)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out
}

// Shutdown lifts every fault and undoes every publish and stage, so stopping the driver
// leaves no mount or loop device behind (the cluster's `down` relies on it).
func (d *Driver) Shutdown() {
	d.faults.Lift("")
	d.mu.Lock()
	published := d.published
	staged := d.staged
	d.published = map[string]string{}
	d.staged = map[string]*staging{}
	d.mu.Unlock()
	for target := range published {
		if err := unpublish(target); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}
	for _, st := range staged {
		if err := d.teardown(st); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}
	d.cleanStale()
}

// cleanStale removes mounts and loop devices of a driver that died without Shutdown.
func (d *Driver) cleanStale() {
	for _, point := range mountPoints(filepath.Join(d.stateDir, "mnt")) {
		if err := unmount(point); err != nil {
			log.Printf("stale mount: %v", err)
		}
	}
	for _, loop := range loopsOf(d.stateDir) {
		if err := detachLoop(loop); err != nil {
			log.Printf("stale loop: %v", err)
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/hanwen/go-fuse/v2/fuse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	defaultVolumeBytes = 64 << 20
	maxVolumeBytes     = 8 << 30
	// Parameters the external-provisioner adds with --extra-create-metadata.
	paramPVCName      = "csi.storage.k8s.io/pvc/name"
	paramPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
)

var version = "dev"

// Driver serves the CSI Identity, Controller and Node services of one node. Volumes are image
// files: ext4 (mounted through the chaos FUSE layer) for Filesystem volumes, raw for Block.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	name        string
	nodeID      string
	topologyKey string
	stateDir    string
	store       *Store
	faults      *Faults
	registered  atomic.Bool
	inflight    sync.WaitGroup // RPCs being served, so shutdown can wait for them

	locks sync.Map // volume or snapshot id -> *sync.Mutex: one operation per object at a time

	mu        sync.Mutex
	staged    map[string]*staging
	published map[string]string // target path -> volume id
}

// staging is a volume made usable on this node by NodeStageVolume.
type staging struct {
	Volume  string `json:"volume"`
	Path    string `json:"path"`
	Loop    string `json:"loop"`
	Private string `json:"private,omitempty"` // where the ext4 is mounted (Filesystem volumes)
	server  *fuse.Server
}

func NewDriver(name, nodeID, stateDir string, faults *Faults) (*Driver, error) {
	store, err := OpenStore(stateDir)
	if err != nil {
		return nil, err
	}
	return &Driver{
		name:        name,
		nodeID:      nodeID,
		topologyKey: "topology." + name + "/node",
		stateDir:    stateDir,
		store:       store,
		faults:      faults,
		staged:      map[string]*staging{},
		published:   map[string]string{},
	}, nil
}

func (d *Driver) lock(id string) func() {
	value, _ := d.locks.LoadOrStore(id, &sync.Mutex{})
	mu := value.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// --- faults on RPCs --------------------------------------------------------------------------

type volumeIDer interface{ GetVolumeId() string }
type nodeIDer interface{ GetNodeId() string }

// target says which node, volume and namespace an RPC is about, for the fault selectors.
func (d *Driver) target(op string, req any) Target {
	t := Target{Op: op}
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		t.Volume = r.GetName()
		t.Node = d.pickNode(r.GetAccessibilityRequirements())
		t.Namespace = r.GetParameters()[paramPVCNamespace]
	case *csi.CreateSnapshotRequest:
		t.Volume = r.GetSourceVolumeId()
	case *csi.DeleteSnapshotRequest:
		if snap, ok := d.store.Snapshot(r.GetSnapshotId()); ok {
			t.Volume = snap.SourceVolume
		}
	case volumeIDer:
		t.Volume = r.GetVolumeId()
	}
	if r, ok := req.(nodeIDer); ok {
		t.Node = r.GetNodeId()
	} else if len(op) > 4 && op[:4] == "Node" {
		t.Node = d.nodeID
	}
	if t.Namespace == "" && t.Volume != "" {
		if v, ok := d.store.Volume(t.Volume); ok {
			t.Namespace = v.PVCNamespace
		}
	}
	return t
}

// intercept applies RPC faults and logs every call with its outcome.
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	d.inflight.Add(1)
	defer d.inflight.Done()
	op := path.Base(info.FullMethod)
	started := time.Now()
	t := d.target(op, req)
	if f, hit := d.faults.Match(t); f != nil {
		log.Printf("%s %s: fault %s (%s), hit %d", op, t.Volume, f.ID, f.Action, hit)
		switch f.Action {
		case ActionError:
			return nil, status.Error(f.code, f.rpcMessage(op))
		case ActionHang, ActionDelay:
			if !f.Wait(ctx, true) {
				log.Printf("%s %s: caller gave up after %s", op, t.Volume, time.Since(started).Round(time.Millisecond))
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		}
	}
	resp, err := handler(ctx, req)
	if op != "Probe" && op != "NodeGetCapabilities" && op != "NodeGetVolumeStats" {
		log.Printf("%s %s: %v in %s", op, t.Volume, status.Code(err), time.Since(started).Round(time.Millisecond))
		if err != nil {
			log.Printf("%s %s: %v", op, t.Volume, err)
		}
	}
	return resp, err
}

// --- Identity --------------------------------------------------------------------------------

func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: version}, nil
}

func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	service := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		service(csi.PluginCapability_Service_CONTROLLER_SERVICE),
		service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
	}}, nil
}

func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// --- Controller ------------------------------------------------------------------------------

// checkCapabilities accepts single-node access (the volumes are files on this node) and
// returns whether the volume is a raw block device.
func checkCapabilities(caps []*csi.VolumeCapability) (bool, error) {
	if len(caps) == 0 {
		return false, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	block, mount := false, false
	for _, c := range caps {
		switch c.GetAccessMode().GetMode() {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
			csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		default:
			return false, status.Errorf(codes.InvalidArgument, "access mode %s is not supported (single node only)", c.GetAccessMode().GetMode())
		}
		switch {
		case c.GetBlock() != nil:
			block = true
		case c.GetMount() != nil:
			if fs := c.GetMount().GetFsType(); fs != "" && fs != "ext4" {
				return false, status.Errorf(codes.InvalidArgument, "filesystem %q is not supported (ext4 only)", fs)
			}
			mount = true
		default:
			return false, status.Error(codes.InvalidArgument, "access type (block or mount) is required")
		}
	}
	if block && mount {
		return false, status.Error(codes.InvalidArgument, "a volume is either block or mount, not both")
	}
	return block, nil
}

// pickNode is where a new volume lives: the first preferred (else requisite) topology, which
// the provisioner sets to the scheduler's chosen node for WaitForFirstConsumer classes.
func (d *Driver) pickNode(req *csi.TopologyRequirement) string {
	for _, list := range [][]*csi.Topology{req.GetPreferred(), req.GetRequisite()} {
		for _, topology := range list {
			if node := topology.GetSegments()[d.topologyKey]; node != "" {
				return node
			}
		}
	}
	return d.nodeID
}

func (d *Driver) csiVolume(v Volume, source *csi.VolumeContentSource) *csi.Volume {
	return &csi.Volume{
		VolumeId:           v.ID,
		CapacityBytes:      v.CapacityBytes,
		ContentSource:      source,
		AccessibleTopology: []*csi.Topology{{Segments: map[string]string{d.topologyKey: v.Node}}},
	}
}

func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	block, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	size := req.GetCapacityRange().GetRequiredBytes()
	limit := req.GetCapacityRange().GetLimitBytes()
	if size == 0 {
		size = min(defaultVolumeBytes, max(limit, 0))
		if size == 0 {
			size = defaultVolumeBytes
		}
	}
	size = (size + (1<<20 - 1)) &^ (1<<20 - 1) // whole MiB
	if limit > 0 && size > limit {
		return nil, status.Errorf(codes.OutOfRange, "%d bytes rounded up to whole MiB exceed the limit of %d", size, limit)
	}
	if size > maxVolumeBytes {
		return nil, status.Errorf(codes.OutOfRange, "at most %d bytes per volume", maxVolumeBytes)
	}
	if node := d.pickNode(req.GetAccessibilityRequirements()); node != d.nodeID {
		return nil, status.Errorf(codes.ResourceExhausted, "node %q is not served by this driver (it serves %q)", node, d.nodeID)
	}
	source := req.GetVolumeContentSource()
	unlock := d.lock(name)
	defer unlock()

	if existing, ok := d.store.Volume(name); ok {
		if existing.CapacityBytes < size || existing.Block != block ||
			existing.SourceSnap != source.GetSnapshot().GetSnapshotId() || existing.SourceVolume != source.GetVolume().GetVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with other parameters", name)
		}
		return &csi.CreateVolumeResponse{Volume: d.csiVolume(existing, source)}, nil
	}
	v := Volume{
		ID:            name,
		CapacityBytes: size,
		Block:         block,
		Node:          d.nodeID,
		PVCName:       req.GetParameters()[paramPVCName],
		PVCNamespace:  req.GetParameters()[paramPVCNamespace],
		Created:       time.Now().UTC(),
	}
	image := d.store.VolumeImage(name)
	switch {
	case source.GetSnapshot() != nil:
		id := source.GetSnapshot().GetSnapshotId()
		snap, ok := d.store.Snapshot(id)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", id)
		}
		if err := d.restore(&v, d.store.SnapshotImage(id), snap.SizeBytes, snap.SourceVolume); err != nil {
			return nil, err
		}
		v.SourceSnap = id
	case source.GetVolume() != nil:
		id := source.GetVolume().GetVolumeId()
		unlockSource := d.lock(id)
		err := d.cloneFrom(&v, id)
		unlockSource()
		if err != nil {
			return nil, err
		}
		v.SourceVolume = id
	default:
		if err := newImage(image, size, block); err != nil {
			return nil, status.Errorf(codes.Internal, "create backing store: %v", err)
		}
	}
	if err := d.store.PutVolume(v); err != nil {
		_ = os.Remove(image)
		return nil, status.Errorf(codes.Internal, "record volume: %v", err)
	}
	return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, source)}, nil
}

// newImage makes an empty backing store: a sparse file, with a fresh ext4 unless it is for a
// raw block volume.
func newImage(image string, size int64, block bool) error {
	tmp := image + ".new"
	file, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := file.Truncate(size); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	if !block {
		if err := makeExt4(tmp); err != nil {
			return err
		}
	}
	return os.Rename(tmp, image)
}

func (d *Driver) restore(v *Volume, from string, sourceSize int64, sourceVolume string) error {
	if sourceSize > v.CapacityBytes {
		return status.Errorf(codes.OutOfRange, "source is %d bytes, more than the %d requested", sourceSize, v.CapacityBytes)
	}
	if src, ok := d.store.Volume(sourceVolume); ok && src.Block != v.Block {
		return status.Error(codes.InvalidArgument, "source and new volume differ in volume mode")
	}
	if err := copySparse(from, d.store.VolumeImage(v.ID), v.CapacityBytes); err != nil {
		return status.Errorf(codes.Internal, "copy %s: %v", from, err)
	}
	v.NeedsGrow = !v.Block && v.CapacityBytes > sourceSize
	return nil
}

// cloneFrom copies a volume's image; a staged Filesystem volume is frozen while it is read.
func (d *Driver) cloneFrom(v *Volume, sourceID string) error {
	src, ok := d.store.Volume(sourceID)
	if !ok {
		return status.Errorf(codes.NotFound, "volume %s not found", sourceID)
	}
	return d.consistentRead(sourceID, func() error {
		return d.restore(v, d.store.VolumeImage(sourceID), src.CapacityBytes, sourceID)
	})
}

func (d *Driver) consistentRead(volumeID string, fn func() error) error {
	d.mu.Lock()
	st := d.staged[volumeID]
	d.mu.Unlock()
	if st == nil || st.Private == "" {
		return fn()
	}
	return freeze(st.Private, fn)
}

func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	unlock := d.lock(id)
	defer unlock()
	d.mu.Lock()
	_, staged := d.staged[id]
	d.mu.Unlock()
	if staged {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still staged on %s", id, d.nodeID)
	}
	if err := d.store.DeleteVolume(id); err != nil {
		return nil, status.Errorf(codes.Internal, "delete %s: %v", id, err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *Driver) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	id, node := req.GetVolumeId(), req.GetNodeId()
	if id == "" || node == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and node id are required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if _, err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	unlock := d.lock(id)
	defer unlock()
	v, ok := d.store.Volume(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	if node != d.nodeID {
		return nil, status.Errorf(codes.NotFound, "node %s not found", node)
	}
	if v.PublishedTo != "" && v.PublishedTo != node {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is published to %s", id, v.PublishedTo)
	}
	v.PublishedTo = node
	if err := d.store.PutVolume(v); err != nil {
		return nil, status.Errorf(codes.Internal, "record volume: %v", err)
	}
	return &csi.ControllerPublishVolumeResponse{}, nil
}

func (d *Driver) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	unlock := d.lock(id)
	defer unlock()
	if v, ok := d.store.Volume(id); ok && (req.GetNodeId() == "" || v.PublishedTo == req.GetNodeId()) {
		v.PublishedTo = ""
		if err := d.store.PutVolume(v); err != nil {
			return nil, status.Errorf(codes.Internal, "record volume: %v", err)
		}
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	v, ok := d.store.Volume(req.GetVolumeId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	block, err := checkCapabilities(req.GetVolumeCapabilities())
	if err != nil || block != v.Block {
		message := "volume mode differs"
		if err != nil {
			message = status.Convert(err).Message()
		}
		return &csi.ValidateVolumeCapabilitiesResponse{Message: message}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *Driver) csiSnapshot(snap Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     snap.ID,
		SourceVolumeId: snap.SourceVolume,
		SizeBytes:      snap.SizeBytes,
		CreationTime:   timestamppb.New(snap.Created),
		ReadyToUse:     true,
	}
}

func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, source := req.GetName(), req.GetSourceVolumeId()
	if name == "" || source == "" {
		return nil, status.Error(codes.InvalidArgument, "name and source volume id are required")
	}
	unlock := d.lock(name)
	defer unlock()
	if existing, ok := d.store.Snapshot(name); ok {
		if existing.SourceVolume != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s", name, existing.SourceVolume)
		}
		return &csi.CreateSnapshotResponse{Snapshot: d.csiSnapshot(existing)}, nil
	}
	unlockSource := d.lock(source)
	defer unlockSource()
	v, ok := d.store.Volume(source)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", source)
	}
	snap := Snapshot{ID: name, SourceVolume: source, SizeBytes: v.CapacityBytes, Created: time.Now().UTC()}
	err := d.consistentRead(source, func() error {
		return copySparse(d.store.VolumeImage(source), d.store.SnapshotImage(name), v.CapacityBytes)
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "copy volume %s: %v", source, err)
	}
	if err := d.store.PutSnapshot(snap); err != nil {
		return nil, status.Errorf(codes.Internal, "record snapshot: %v", err)
	}
	return &csi.CreateSnapshotResponse{Snapshot: d.csiSnapshot(snap)}, nil
}

func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id is required")
	}
	unlock := d.lock(id)
	defer unlock()
	if err := d.store.DeleteSnapshot(id); err != nil {
		return nil, status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	var matching []Snapshot
	for _, snap := range d.store.Snapshots() {
		if (req.GetSnapshotId() == "" || snap.ID == req.GetSnapshotId()) &&
			(req.GetSourceVolumeId() == "" || snap.SourceVolume == req.GetSourceVolumeId()) {
			matching = append(matching, snap)
		}
	}
	start := 0
	if token := req.GetStartingToken(); token != "" {
		if _, err := fmt.Sscanf(token, "%d", &start); err != nil || start < 0 || start > len(matching) {
			return nil, status.Errorf(codes.Aborted, "invalid starting token %q", token)
		}
	}
	end := len(matching)
	if n := int(req.GetMaxEntries()); n > 0 && start+n < end {
		end = start + n
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, snap := range matching[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: d.csiSnapshot(snap)})
	}
	if end < len(matching) {
		resp.NextToken = fmt.Sprint(end)
	}
	return resp, nil
}

// --- backing-store faults (control interface) -------------------------------------------------

// ReplaceBacking swaps a volume's backing store for an empty one (a fresh ext4 for Filesystem
// volumes): the data is gone the next time the volume is staged, as if a disk was swapped.
func (d *Driver) ReplaceBacking(id string) error {
	unlock := d.lock(id)
	defer unlock()
	v, ok := d.store.Volume(id)
	if !ok {
		return fmt.Errorf("volume %s not found: %w", id, os.ErrNotExist)
	}
	return newImage(d.store.VolumeImage(id), v.CapacityBytes, v.Block)
}

// errInUse: the volume is staged; the caller should try again between two uses.
var errInUse = errors.New("volume is staged (in use)")

// Corrupt inverts every bit of a byte range of a volume's backing store, under whatever
// filesystem or data the volume holds (silent corruption below the block layer). It refuses
// while the volume is staged, so that no writer in flight can overwrite the damage before
// anybody reads it: staging waits for it (same lock), and whoever stages next finds it.
func (d *Driver) Corrupt(id string, offset, length int64) error {
	unlock := d.lock(id)
	defer unlock()
	v, ok := d.store.Volume(id)
	if !ok {
		return fmt.Errorf("volume %s not found: %w", id, os.ErrNotExist)
	}
	d.mu.Lock()
	staged := d.staged[id] != nil
	d.mu.Unlock()
	if staged {
		return errInUse
	}
	if offset < 0 || length <= 0 || offset+length > v.CapacityBytes {
		return errors.New("range outside the volume")
	}
	file, err := os.OpenFile(d.store.VolumeImage(id), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	data := make([]byte, length)
	if _, err := file.ReadAt(data, offset); err != nil {
		return err
	}
	for i := range data {
		data[i] ^= 0xff
	}
	if _, err := file.WriteAt(data, offset); err != nil {
		return err
	}
	return file.Sync()
}

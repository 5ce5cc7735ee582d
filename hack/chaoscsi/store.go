package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Volume is what the controller side knows about a volume; it is persisted as JSON next to
// its backing image so a restarted driver still knows its volumes.
type Volume struct {
	ID            string    `json:"id"`
	CapacityBytes int64     `json:"capacityBytes"`
	Block         bool      `json:"block"`
	Node          string    `json:"node"`
	PVCName       string    `json:"pvcName,omitempty"`
	PVCNamespace  string    `json:"pvcNamespace,omitempty"`
	SourceVolume  string    `json:"sourceVolume,omitempty"`
	SourceSnap    string    `json:"sourceSnapshot,omitempty"`
	PublishedTo   string    `json:"publishedTo,omitempty"`
	Created       time.Time `json:"created"`
	// NeedsGrow: the image was copied from a smaller source; the filesystem is grown when
	// the volume is next staged.
	NeedsGrow bool `json:"needsGrow,omitempty"`
}

type Snapshot struct {
	ID           string    `json:"id"`
	SourceVolume string    `json:"sourceVolume"`
	SizeBytes    int64     `json:"sizeBytes"`
	Created      time.Time `json:"created"`
}

// Store keeps volumes and snapshots under one directory:
//
//	volumes/<id>.json, volumes/<id>.img      metadata and backing image
//	snapshots/<id>.json, snapshots/<id>.img  metadata and a copy of the source image
type Store struct {
	dir       string
	mu        sync.Mutex
	volumes   map[string]*Volume
	snapshots map[string]*Snapshot
}

func OpenStore(dir string) (*Store, error) {
	s := &Store{dir: dir, volumes: map[string]*Volume{}, snapshots: map[string]*Snapshot{}}
	for _, sub := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := loadAll(filepath.Join(dir, "volumes"), s.volumes); err != nil {
		return nil, err
	}
	if err := loadAll(filepath.Join(dir, "snapshots"), s.snapshots); err != nil {
		return nil, err
	}
	return s, nil
}

func loadAll[T any](dir string, into map[string]*T) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		item := new(T)
		if err := json.Unmarshal(data, item); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		into[filepath.Base(name[:len(name)-len(".json")])] = item
	}
	return nil
}

func (s *Store) VolumeImage(id string) string   { return filepath.Join(s.dir, "volumes", id+".img") }
func (s *Store) SnapshotImage(id string) string { return filepath.Join(s.dir, "snapshots", id+".img") }

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *Store) Volume(id string) (Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return *v, true
}

func (s *Store) PutVolume(v Volume) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeJSON(filepath.Join(s.dir, "volumes", v.ID+".json"), v); err != nil {
		return err
	}
	s.volumes[v.ID] = &v
	return nil
}

func (s *Store) DeleteVolume(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, path := range []string{s.VolumeImage(id), filepath.Join(s.dir, "volumes", id+".json")} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	delete(s.volumes, id)
	return nil
}

func (s *Store) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Volume, 0, len(s.volumes))
	for _, v := range s.volumes {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Store) Snapshot(id string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	return *snap, true
}

func (s *Store) PutSnapshot(snap Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeJSON(filepath.Join(s.dir, "snapshots", snap.ID+".json"), snap); err != nil {
		return err
	}
	s.snapshots[snap.ID] = &snap
	return nil
}

func (s *Store) DeleteSnapshot(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, path := range []string{s.SnapshotImage(id), filepath.Join(s.dir, "snapshots", id+".json")} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	delete(s.snapshots, id)
	return nil
}

func (s *Store) Snapshots() []Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Snapshot, 0, len(s.snapshots))
	for _, snap := range s.snapshots {
		out = append(out, *snap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// copySparse copies an image without filling its holes, so a 64 MiB volume that holds a few
// MiB costs a few MiB, then sizes the copy to `size` (never below the source).
func copySparse(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := copyData(in, out, info.Size()); err != nil {
		out.Close()
		return err
	}
	if size < info.Size() {
		size = info.Size()
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// copyData copies the data extents of in (SEEK_DATA/SEEK_HOLE) to the same offsets of out.
func copyData(in, out *os.File, size int64) error {
	fd := int(in.Fd())
	var offset int64
	for offset < size {
		start, err := unix.Seek(fd, offset, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, end-start); err != nil {
			return err
		}
		offset = end
	}
	return nil
}

package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// snapshotDebounce is how long the saver waits after a change before writing,
// so a burst of calls costs one write.
const snapshotDebounce = 200 * time.Millisecond

// snapshot is the on-disk state. Credentials and the token signing key are
// included so tokens issued before a restart stay valid; the file is 0600.
type snapshot struct {
	Version     int                      `json:"version"`
	SigningKey  []byte                   `json:"signing_key"`
	Credentials map[string]string        `json:"credentials"`
	Tasks       []map[string]any         `json:"tasks"`
	Queues      []api.Queue              `json:"queues"`
	Projects    []map[string]any         `json:"projects"`
	Workers     []*worker                `json:"workers"`
	Events      map[string][]storedEvent `json:"events"`
	EventSeq    int64                    `json:"event_seq"`
}

func (s *Server) loadSnapshot(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("snapshot %s: %w; delete it or fix the JSON", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(snap.SigningKey) > 0 {
		s.signingKey = snap.SigningKey
	}
	for k, v := range snap.Credentials {
		if _, ok := s.creds[k]; !ok {
			s.creds[k] = v
		}
	}
	for _, t := range snap.Tasks {
		fixCompany(t)
		id := getStr(t, "id")
		s.tasks[id] = t
		s.taskOrder = append(s.taskOrder, id)
	}
	for i := range snap.Queues {
		q := snap.Queues[i]
		s.queues[q.ID] = &q
		s.queueOrder = append(s.queueOrder, q.ID)
	}
	for _, p := range snap.Projects {
		fixCompany(p)
		id := getStr(p, "id")
		s.projects[id] = p
		s.projOrder = append(s.projOrder, id)
	}
	for _, w := range snap.Workers {
		s.workers[w.ID] = w
	}
	if snap.Events != nil {
		s.events = snap.Events
	}
	s.eventSeq = snap.EventSeq
	return nil
}

// fixCompany turns the {"id": ...} company that older emulators stored in
// tasks and projects into the plain id string the schema asks for.
func fixCompany(doc map[string]any) {
	if m, ok := doc["company"].(map[string]any); ok {
		doc["company"], _ = m["id"].(string)
	}
}

func (s *Server) buildSnapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{Version: 1, SigningKey: s.signingKey, Credentials: s.creds, EventSeq: s.eventSeq,
		Events: s.events}
	for _, id := range s.taskOrder {
		snap.Tasks = append(snap.Tasks, s.tasks[id])
	}
	for _, id := range s.queueOrder {
		snap.Queues = append(snap.Queues, *s.queues[id])
	}
	for _, id := range s.projOrder {
		snap.Projects = append(snap.Projects, s.projects[id])
	}
	for _, id := range sortedKeys(s.workers) {
		snap.Workers = append(snap.Workers, s.workers[id])
	}
	return json.MarshalIndent(snap, "", " ")
}

// saveSnapshot writes the state atomically: temp file in the same
// directory, fsync, rename.
func (s *Server) saveSnapshot() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	b, err := s.buildSnapshot()
	if err != nil {
		return fmt.Errorf("snapshot: encoding state: %w", err)
	}
	path := s.opts.SnapshotPath
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("snapshot %s: %w; check the directory exists and is writable", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	return nil
}

// saver writes the snapshot snapshotDebounce after the first change of a
// burst, until Close.
func (s *Server) saver() {
	defer close(s.saverDone)
	for {
		select {
		case <-s.done:
			return
		case <-s.dirty:
		}
		select {
		case <-s.done:
			return // Close saves
		case <-time.After(snapshotDebounce):
		}
		if err := s.saveSnapshot(); err != nil {
			s.log.Error("snapshot save failed", "err", err)
		}
	}
}

package instance

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startGroup starts `sh -c "sleep 60 & sleep 60"` leading its own process
// group; the test reaps it at the end.
func startGroup(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep 60 & exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	// Wait for the background sleep to exist in the group.
	deadline := time.Now().Add(5 * time.Second)
	for len(groupMembers(cmd.Process.Pid)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func TestGroupsRecordAndRemove(t *testing.T) {
	dir := t.TempDir()
	inst, err := Lock(dir, "host:gpu0")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	g := startGroup(t)
	remove, err := inst.Groups().Add("task1", g.Process.Pid, "task")
	if err != nil {
		t.Fatal(err)
	}
	f, err := readGroups(GroupsPath(dir, "host:gpu0"))
	if err != nil || len(f.Groups) != 1 || f.Groups[0].PGID != g.Process.Pid || f.Groups[0].TaskID != "task1" || f.Groups[0].Start == "" {
		t.Fatalf("record = %+v, %v", f, err)
	}
	remove()
	if _, err := os.Stat(GroupsPath(dir, "host:gpu0")); !os.IsNotExist(err) {
		t.Errorf("record still there after its only group was removed: %v", err)
	}
	if !groupRuns(Group{PGID: g.Process.Pid, Start: startTime(g.Process.Pid)}) {
		t.Error("a removed record ended its group")
	}
}

// The next start of a worker ends the groups an earlier run recorded and
// returns their tasks; a record whose pid was reused (another start time) is
// left alone.
func TestEndLeftovers(t *testing.T) {
	dir := t.TempDir()
	left := startGroup(t)
	other := startGroup(t)
	path := GroupsPath(dir, "host:gpu0")
	rec := groupsFile{WorkerID: "host:gpu0", Groups: []Group{
		{TaskID: "t1", PGID: left.Process.Pid, Start: startTime(left.Process.Pid), Role: "task"},
		{TaskID: "t2", PGID: other.Process.Pid, Start: "1", Role: "task"}, // a reused pid
		{TaskID: "t3", PGID: 999999999, Start: "5", Role: "execute"},      // long gone
	}}
	if err := writeGroups(path, rec); err != nil {
		t.Fatal(err)
	}
	inst, err := Lock(dir, "host:gpu0")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	var logs []string
	ids, err := inst.Groups().EndLeftovers(func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"t1", "t2", "t3"}) {
		t.Errorf("tasks to mark = %v", ids)
	}
	if len(groupMembers(left.Process.Pid)) != 0 {
		t.Error("the leftover group still runs")
	}
	if len(groupMembers(other.Process.Pid)) != 2 {
		t.Error("a group whose leader has another start time was killed")
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "task t1") {
		t.Errorf("log = %q", logs)
	}
	for _, id := range ids {
		if err := inst.Groups().Forget(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("record still there after every task was forgotten: %v", err)
	}
}

// The supervisor ends the groups of a dead agent, marks them ended for the
// agent's next start, and leaves a live agent's groups alone.
func TestEndOrphans(t *testing.T) {
	dir := t.TempDir()
	dead, live := startGroup(t), startGroup(t)
	if err := writeGroups(GroupsPath(dir, "host:gpu0"), groupsFile{WorkerID: "host:gpu0", Groups: []Group{
		{TaskID: "t1", PGID: dead.Process.Pid, Start: startTime(dead.Process.Pid), Role: "execute"}}}); err != nil {
		t.Fatal(err)
	}
	inst, err := Lock(dir, "host:gpu1")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, err := inst.Groups().Add("t2", live.Process.Pid, "task"); err != nil {
		t.Fatal(err)
	}
	n, err := EndOrphans(dir, nil)
	if err != nil || n != 1 {
		t.Fatalf("EndOrphans = %d, %v; want 1", n, err)
	}
	if len(groupMembers(dead.Process.Pid)) != 0 {
		t.Error("the dead agent's group still runs")
	}
	if len(groupMembers(live.Process.Pid)) != 2 {
		t.Error("the live agent's group was killed")
	}
	f, err := readGroups(GroupsPath(dir, "host:gpu0"))
	if err != nil || len(f.Groups) != 1 || !f.Groups[0].Ended {
		t.Errorf("record after EndOrphans = %+v, %v; want t1 ended", f, err)
	}
}

// PGIDs lists the groups this run recorded while they are recorded, not
// those an earlier run left in the file.
func TestGroupsPGIDs(t *testing.T) {
	dir := t.TempDir()
	old := startGroup(t)
	if err := writeGroups(GroupsPath(dir, "host:gpu2"), groupsFile{WorkerID: "host:gpu2",
		Groups: []Group{{TaskID: "old", PGID: old.Process.Pid, Start: startTime(old.Process.Pid), Role: "task"}}}); err != nil {
		t.Fatal(err)
	}
	inst, err := Lock(dir, "host:gpu2")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	g := startGroup(t)
	remove, err := inst.Groups().Add("task1", g.Process.Pid, "task")
	if err != nil {
		t.Fatal(err)
	}
	if got := inst.Groups().PGIDs(); !slices.Equal(got, []int{g.Process.Pid}) {
		t.Errorf("PGIDs = %v, want [%d] (the earlier run's %d left out)", got, g.Process.Pid, old.Process.Pid)
	}
	remove()
	if got := inst.Groups().PGIDs(); len(got) != 0 {
		t.Errorf("PGIDs after remove = %v, want none", got)
	}
}

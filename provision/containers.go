package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	agentdocker "github.com/gpufleet/clearml-agent-go/agent/docker"
)

// containerListTimeout bounds the engine query of one status call.
const containerListTimeout = 10 * time.Second

// AddContainers lists, for every docker-mode row, the containers its agent
// created: labelled clearml-worker-id with the agent's worker id, or
// clearml-parent-worker-id with it (the task containers of a services
// agent). Rows whose engine does not answer get DockerErr instead.
func AddContainers(ctx context.Context, rows []StatusRow) {
	byHost := map[string][]int{}
	for i, r := range rows {
		if r.Docker {
			byHost[r.DockerHost] = append(byHost[r.DockerHost], i)
		}
	}
	for host, idx := range byHost {
		list, err := agentContainers(ctx, host)
		for _, i := range idx {
			r := &rows[i]
			switch {
			case err != nil:
				r.DockerErr = fmt.Sprintf("engine unreachable at %s: %s", host, err)
				continue
			case r.WorkerID == "":
				r.DockerErr = "worker id unknown (the agent is not running)"
				continue
			}
			for _, c := range list {
				if c.Labels[agentdocker.LabelWorker] != r.WorkerID && c.Labels[agentdocker.LabelParentWorker] != r.WorkerID {
					continue
				}
				id := c.ID
				if len(id) > 12 {
					id = id[:12]
				}
				r.Containers = append(r.Containers, ContainerRow{ID: id, Image: c.Image, Task: c.Labels[agentdocker.LabelTask],
					Status: c.Status, Worker: c.Labels[agentdocker.LabelWorker]})
			}
		}
	}
}

// agentContainers lists every container (running or not) that carries the
// agent's worker label.
func agentContainers(ctx context.Context, host string) ([]container.Summary, error) {
	c, err := dockerClient(host)
	if err != nil {
		return nil, fmt.Errorf("%s", firstLine(err.Error()))
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, containerListTimeout)
	defer cancel()
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", agentdocker.LabelWorker))})
	if err != nil {
		return nil, fmt.Errorf("%s", firstLine(err.Error()))
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created < list[j].Created })
	return list, nil
}

// formatContainers appends the containers of the docker-mode rows.
func formatContainers(b *bytes.Buffer, rows []StatusRow) {
	var docker []StatusRow
	for _, r := range rows {
		if r.Docker {
			docker = append(docker, r)
		}
	}
	if len(docker) == 0 {
		return
	}
	b.WriteString("\ncontainers (docker mode):\n")
	w := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "UNIT\tCONTAINER\tIMAGE\tTASK\tSTATUS")
	var notes []string
	for _, r := range docker {
		if r.DockerErr != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Unit, r.DockerErr))
			continue
		}
		if len(r.Containers) == 0 {
			fmt.Fprintf(w, "%s\t-\t-\t-\tno containers\n", r.Unit)
		}
		for _, c := range r.Containers {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Unit, c.ID, dash(c.Image), dash(c.Task), dash(c.Status))
		}
	}
	w.Flush()
	for _, n := range notes {
		b.WriteString(n + "\n")
	}
}

// runningWorkerID is the worker id in an agent's pid file under stateDir
// (agent/identity writes <id>.pid as JSON), "" when there is none. It only
// reads: the agent owns the directory and its locks.
func runningWorkerID(stateDir string) string {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.pid"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r struct {
			WorkerID string `json:"worker_id"`
		}
		if json.Unmarshal(data, &r) == nil && strings.TrimSpace(r.WorkerID) != "" {
			return r.WorkerID
		}
	}
	return ""
}

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Defaults of the docker phase: the private engine of scripts/test-dockerd.sh
// and the offline images of scripts/docker-images.sh.
const (
	DefaultDockerHost   = "unix:///run/clearml-test-docker.sock"
	DefaultDockerPython = "localhost/clearml-test-python:1"
	DefaultDockerBash   = "localhost/clearml-test-busybox:1"
	// DefaultDockerFlags are appended to the agent command of the docker
	// phase. --cpu-only: a host without the NVIDIA runtime cannot start a
	// container that asks for GPUs.
	DefaultDockerFlags = "--docker --cpu-only"
	// DefaultDockerArgs is CLEARML_AGENT_EXTRA_DOCKER_ARGS of the docker
	// phase: the test engine has no bridge, and the containers reach the
	// emulator on the host's 127.0.0.1.
	DefaultDockerArgs = "--network host"
)

// firstShell is first.py for a bash task.
const firstShell = `echo "BENCH-FIRST-$CLEARML_TASK_ID"
`

// benchLabel marks the containers the harness itself creates (the engine
// floor), so that none is left behind.
const benchLabel = "clearml-bench"

// skipped is a phase that cannot run on this machine; Run records why.
type skipped struct{ why string }

func (s skipped) Error() string { return s.why }

func (h *harness) dockerHost() string {
	if h.cfg.DockerHost != "" {
		return h.cfg.DockerHost
	}
	if v := os.Getenv("DOCKER_HOST"); v != "" {
		return v
	}
	return DefaultDockerHost
}

// dockerEngine connects to the engine of the docker phase and checks that
// both images are there. No engine, or a missing image, is a skip.
func (h *harness) dockerEngine(ctx context.Context) (*client.Client, error) {
	host := h.dockerHost()
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, skipped{fmt.Sprintf("docker client for %s: %s", host, oneline.Of(err))}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx); err != nil {
		c.Close()
		return nil, skipped{fmt.Sprintf("no Docker engine answers at %s (%s); start the test engine with "+
			"`sudo scripts/test-dockerd.sh start`, or pass -docker-host", host, oneline.Of(err))}
	}
	for _, img := range []string{h.cfg.DockerPython, h.cfg.DockerBash} {
		if _, err := c.ImageInspect(pctx, img); err != nil {
			c.Close()
			return nil, skipped{fmt.Sprintf("image %s is not in the engine at %s (%s); build the test images with "+
				"`sudo DOCKER_HOST=%s scripts/docker-images.sh`", img, host, oneline.Of(err), host)}
		}
	}
	return c, nil
}

// scriptTask creates a task whose code is the literal script (no
// repository: a file:// repository on the host is not inside a container).
func (h *harness) scriptTask(name, binary, entry, script string, c *api.Container) string {
	return h.srv.CreateTask(api.Task{Name: name, Type: "training", Container: c,
		Script: &api.Script{EntryPoint: entry, WorkingDir: ".", Binary: binary, Diff: script}})
}

// phaseDocker times get_next_task -> the task's first line in docker mode
// (python in the python image, bash in busybox), against venv mode with the
// same python task, and the engine's own floor: create, start and first
// output of a bare container of each image.
func (h *harness) phaseDocker(ctx context.Context) error {
	c, err := h.dockerEngine(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	defer func() {
		// Whatever an interrupted run left: the harness's own containers
		// and the agent's (its worker id). The agent removes its own when
		// all goes well.
		rc, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		removeLabelled(rc, c, benchLabel+"="+h.workerID)
		removeLabelled(rc, c, "clearml-worker-id="+h.dockerWorker())
	}()
	host := h.dockerHost()

	pyTask := func(name string) string {
		return h.scriptTask(name, h.cfg.Python, "first.py", firstScript, nil)
	}
	if err := h.venvSeries(ctx, pyTask); err != nil {
		h.add("docker: venv mode baseline", "FAILED", "", oneline.Of(err))
	}

	// Docker mode: one daemon; its default image is the python one, the
	// bash tasks name busybox in their container section. HOME is fresh, so
	// the caches (~/.clearml/docker-cache/<worker>/<image>) start empty.
	home := filepath.Join(h.dir, "docker-home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	env := []string{
		"HOME=" + home,
		"DOCKER_HOST=" + host,
		"CLEARML_DOCKER_IMAGE=" + h.cfg.DockerPython,
		"CLEARML_AGENT_EXTRA_DOCKER_ARGS=" + h.cfg.DockerArgs,
		"CLEARML_WORKER_ID=" + h.dockerWorker(),
		"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=" + h.cfg.FastPoll,
	}
	if h.cfg.DockerBinary != "" {
		env = append(env, "CLEARML_AGENT_DOCKER_BINARY="+h.cfg.DockerBinary)
	}
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	a, err := h.startAgentCmd("docker", h.cfg.AgentCmd+" "+h.cfg.DockerFlags, env...)
	if err != nil {
		return err
	}
	defer func() { _ = a.stop(ctx) }()
	if _, err := waitProbe(ctx, p, a, 60*time.Second); err != nil {
		return err
	}
	pyImg := h.cfg.DockerPython
	if err := h.coldWarm(ctx, a, "docker python", "python3 first.py in "+pyImg, "<= 1.5 s",
		func(name string) string { return h.scriptTask(name, "python3", "first.py", firstScript, nil) }); err != nil {
		h.add("docker python", "FAILED", "", oneline.Of(err))
	}
	bb := h.cfg.DockerBash
	if err := h.coldWarm(ctx, a, "docker bash", "bash first.sh in "+bb, "",
		func(name string) string {
			return h.scriptTask(name, "bash", "first.sh", firstShell, &api.Container{Image: bb})
		}); err != nil {
		h.add("docker bash", "FAILED", "", oneline.Of(err))
	}

	// The engine's floor, with the agent idle.
	for _, f := range []struct {
		image string
		cmd   []string
	}{
		{pyImg, []string{"python3", "-c", "print('x', flush=True)"}},
		{bb, []string{"echo", "x"}},
	} {
		if err := h.engineFloor(ctx, c, f.image, f.cmd); err != nil {
			h.add("engine floor "+f.image, "FAILED", "", oneline.Of(err))
		}
	}
	return nil
}

func (h *harness) dockerWorker() string { return h.workerID + "-docker" }

// venvSeries times the python task of the docker series in venv mode, on
// an agent of its own.
func (h *harness) venvSeries(ctx context.Context, newTask func(string) string) error {
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	a, err := h.startAgent("docker-venv", "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC="+h.cfg.FastPoll)
	if err != nil {
		return err
	}
	defer func() { _ = a.stop(ctx) }()
	if _, err := waitProbe(ctx, p, a, 60*time.Second); err != nil {
		return err
	}
	return h.coldWarm(ctx, a, "venv mode, same task", h.cfg.Python+" first.py on the host", "", newTask)
}

// coldWarm times one run of a fresh task (cold), then Repeats more (warm),
// and adds two rows. The notes split each run at the execute child's
// tasks.started ("worker started execution"): before it the daemon's part
// (in docker mode: the container created and started, the agent inside up),
// after it the task's set-up and start.
func (h *harness) coldWarm(ctx context.Context, a *agentProc, label, what, target string, newTask func(string) string) error {
	run := func(name string) (total, before time.Duration, err error) {
		id := newTask(name)
		gnt := h.rec.watch("queues.get_next_task", true, id)
		st := h.rec.watch("tasks.started", false, id, "worker started execution")
		defer h.rec.unwatch(gnt, st)
		total, err = h.timeFirst(ctx, a, id)
		if err != nil {
			return 0, 0, err
		}
		g, _ := gnt.fired()
		if s, ok := st.fired(); ok {
			before = s.Sub(g)
		}
		return total, before, nil
	}
	slug := strings.ReplaceAll(label, " ", "-")
	cold, coldBefore, err := run(slug + "-cold")
	if err != nil {
		return fmt.Errorf("cold run: %w", err)
	}
	h.add(label+": get_next_task -> first line, cold", ms(cold), "",
		fmt.Sprintf("%s; first run, caches empty; to the child's tasks.started %s", what, ms(coldBefore)))
	var warm, befores []time.Duration
	for i := range h.cfg.Repeats {
		d, b, err := run(fmt.Sprintf("%s-warm-%d", slug, i))
		if err != nil {
			return fmt.Errorf("warm run %d: %w", i, err)
		}
		warm, befores = append(warm, d), append(befores, b)
	}
	lo, med := minMedian(warm)
	_, bmed := minMedian(befores)
	h.add(label+": get_next_task -> first line, warm", ms(med), target,
		fmt.Sprintf("median of %d, min %s; to the child's tasks.started %s (median)", len(warm), ms(lo), ms(bmed)))
	return nil
}

// engineFloor runs a bare container of image Repeats+1 times (the first
// discarded) and reports the median of create, start, and first output.
func (h *harness) engineFloor(ctx context.Context, c *client.Client, image string, cmd []string) error {
	var creates, starts, firsts []time.Duration
	for i := range h.cfg.Repeats + 1 {
		cr, st, fo, err := h.containerOnce(ctx, c, image, cmd)
		if err != nil {
			return err
		}
		if i > 0 {
			creates, starts, firsts = append(creates, cr), append(starts, st), append(firsts, fo)
		}
	}
	_, cr := minMedian(creates)
	_, st := minMedian(starts)
	lo, fo := minMedian(firsts)
	h.add("engine floor: create -> first output, "+image, ms(fo), "",
		fmt.Sprintf("%q, no agent; median of %d (min %s): create %s, start %s",
			strings.Join(cmd, " "), len(firsts), ms(lo), ms(cr), ms(st)))
	return nil
}

// containerOnce creates, attaches, starts and removes one container and
// returns the time the create call took, the start call took, and from
// before create to the first output byte.
func (h *harness) containerOnce(ctx context.Context, c *client.Client, image string, cmd []string) (create, start, first time.Duration, err error) {
	bg := context.WithoutCancel(ctx)
	t0 := time.Now()
	r, err := c.ContainerCreate(ctx, &container.Config{Image: image, Cmd: cmd, AttachStdout: true, AttachStderr: true,
		Labels: map[string]string{benchLabel: h.workerID}}, &container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("create %s: %w", image, err)
	}
	defer func() {
		rc, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		_ = c.ContainerRemove(rc, r.ID, container.RemoveOptions{Force: true})
	}()
	create = time.Since(t0)
	hj, err := c.ContainerAttach(ctx, r.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("attach %s: %w", image, err)
	}
	defer hj.Close()
	t1 := time.Now()
	if err := c.ContainerStart(ctx, r.ID, container.StartOptions{}); err != nil {
		return 0, 0, 0, fmt.Errorf("start %s: %w", image, err)
	}
	start = time.Since(t1)
	got := make(chan error, 1)
	go func() {
		// The stream is multiplexed: its first byte is the header of the
		// first output frame.
		_, err := hj.Reader.ReadByte()
		got <- err
		_, _ = io.Copy(io.Discard, hj.Reader)
	}()
	select {
	case err := <-got:
		if err != nil {
			return 0, 0, 0, fmt.Errorf("%s %q printed nothing: %w", image, cmd, err)
		}
		first = time.Since(t0)
	case <-time.After(2 * time.Minute):
		return 0, 0, 0, fmt.Errorf("%s %q printed nothing in 2 minutes", image, cmd)
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	wc, ec := c.ContainerWait(ctx, r.ID, container.WaitConditionNotRunning)
	select {
	case w := <-wc:
		if w.StatusCode != 0 {
			return 0, 0, 0, fmt.Errorf("%s %q: exit code %d", image, cmd, w.StatusCode)
		}
	case err := <-ec:
		return 0, 0, 0, fmt.Errorf("wait for %s %q: %w", image, cmd, err)
	}
	return create, start, first, nil
}

// removeLabelled removes the containers carrying label, running or not.
func removeLabelled(ctx context.Context, c *client.Client, label string) {
	list, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return
	}
	for _, k := range list {
		_ = c.ContainerRemove(ctx, k.ID, container.RemoveOptions{Force: true})
	}
}

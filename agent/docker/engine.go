package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Labels the agent puts on its containers.
const (
	LabelWorker       = "clearml-worker-id"
	LabelParentWorker = "clearml-parent-worker-id"
	LabelTask         = "clearml-task-id"
)

// Engine is the container engine behind the Docker API (dockerd, or podman's
// compatible socket): DOCKER_HOST and the other DOCKER_* variables are
// honoured, and the API version is negotiated with the engine.
type Engine struct {
	c    *client.Client
	host string
}

// Connect makes a client and pings the engine. The error says which engine
// could not be reached and how to fix it, in one line.
func Connect(ctx context.Context) (*Engine, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %v; check DOCKER_HOST and the other DOCKER_* variables", err)
	}
	e := &Engine{c: c, host: c.DaemonHost()}
	if err := e.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return e, nil
}

// Ping checks that the engine answers.
func (e *Engine) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.c.Ping(pctx); err != nil {
		return fmt.Errorf("docker engine at %s does not answer: %s; start it (systemctl start docker) or point DOCKER_HOST at a running one",
			e.host, oneline.Of(err))
	}
	return nil
}

// Host is the engine's address (DOCKER_HOST or the default socket).
func (e *Engine) Host() string { return e.host }

// Client is the underlying Docker API client.
func (e *Engine) Client() *client.Client { return e.c }

// Close releases the client.
func (e *Engine) Close() error { return e.c.Close() }

// EnsureImage pulls ref when the engine does not have it (or always, with
// force), reporting progress lines to log. A pull that fails (the registry
// cannot be reached, the image does not exist) is one line naming the image.
func (e *Engine) EnsureImage(ctx context.Context, ref string, force bool, log func(string)) error {
	if !force {
		if _, err := e.c.ImageInspect(ctx, ref); err == nil {
			return nil
		} else if !client.IsErrNotFound(err) {
			return fmt.Errorf("docker image %s: %s", ref, oneline.Of(err))
		}
		log(fmt.Sprintf("docker image %s is not here: pulling it", ref))
	} else {
		log(fmt.Sprintf("pulling docker image %s (agent.docker_force_pull)", ref))
	}
	rc, err := e.c.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("docker image %s could not be pulled: %s; check the image name and that the engine reaches its registry (or load the image with docker load)", ref, oneline.Of(err))
	}
	defer rc.Close()
	if err := pullProgress(rc, log); err != nil {
		return fmt.Errorf("docker image %s could not be pulled: %s; check the image name and that the engine reaches its registry (or load the image with docker load)", ref, oneline.Of(err))
	}
	log(fmt.Sprintf("pulled docker image %s", ref))
	return nil
}

// pullProgress turns the engine's JSON progress stream into log lines: one
// per status change of a layer (not every byte count), and the stream's error.
func pullProgress(r io.Reader, log func(string)) error {
	type msg struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		Error    string `json:"error"`
		ErrorDet *struct {
			Message string `json:"message"`
		} `json:"errorDetail"`
	}
	last := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m msg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		if m.ErrorDet != nil && m.ErrorDet.Message != "" {
			return errors.New(m.ErrorDet.Message)
		}
		if m.Status == "" || last[m.ID] == m.Status {
			continue
		}
		last[m.ID] = m.Status
		if m.ID != "" {
			log(m.ID + ": " + m.Status)
		} else {
			log(m.Status)
		}
	}
	return sc.Err()
}

// Container is one created container.
type Container struct {
	e  *Engine
	ID string
}

// Create creates (does not start) a container.
func (e *Engine) Create(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig) (*Container, error) {
	r, err := e.c.ContainerCreate(ctx, cfg, host, net, nil, name)
	if err != nil {
		return nil, fmt.Errorf("creating the container from %s: %s", cfg.Image, oneline.Of(err))
	}
	return &Container{e: e, ID: r.ID}, nil
}

// Attach connects to the container's stdin (when it was created with
// OpenStdin) and its stdout and stderr, before Start so that no output is
// missed. stdout and stderr get the demultiplexed streams; closing the
// returned stdin (or losing this process) closes the container's stdin when
// it was created with StdinOnce. done closes when both streams ended.
func (c *Container) Attach(ctx context.Context, withStdin bool, stdout, stderr io.Writer) (stdin io.WriteCloser, done <-chan error, err error) {
	hj, err := c.e.c.ContainerAttach(ctx, c.ID, container.AttachOptions{Stream: true, Stdin: withStdin, Stdout: true, Stderr: true})
	if err != nil {
		return nil, nil, fmt.Errorf("attaching to container %s: %s", shortID(c.ID), oneline.Of(err))
	}
	ch := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, hj.Reader)
		hj.Close()
		ch <- err
	}()
	return closeWriter{hj.Conn, hj.CloseWrite}, ch, nil
}

type closeWriter struct {
	io.Writer
	close func() error
}

func (w closeWriter) Close() error { return w.close() }

// Start starts the container.
func (c *Container) Start(ctx context.Context) error {
	if err := c.e.c.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("starting container %s: %s", shortID(c.ID), oneline.Of(err))
	}
	return nil
}

// Wait waits until the container stopped and returns its exit code.
func (c *Container) Wait(ctx context.Context) (int, error) {
	return c.e.Wait(ctx, c.ID)
}

// Wait waits until container id stopped and returns its exit code.
func (e *Engine) Wait(ctx context.Context, id string) (int, error) {
	resc, errc := e.c.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case r := <-resc:
		if r.Error != nil && r.Error.Message != "" {
			return int(r.StatusCode), fmt.Errorf("waiting for container %s: %s", shortID(id), r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-errc:
		return -1, fmt.Errorf("waiting for container %s: %s", shortID(id), oneline.Of(err))
	}
}

// Stop sends SIGTERM to the container's main process and SIGKILL after grace.
func (c *Container) Stop(ctx context.Context, grace time.Duration) error {
	return c.e.Stop(ctx, c.ID, grace)
}

// Stop stops container id: SIGTERM, then SIGKILL after grace.
func (e *Engine) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := max(int(grace.Round(time.Second)/time.Second), 1)
	if err := e.c.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("stopping container %s: %s", shortID(id), oneline.Of(err))
	}
	return nil
}

// Remove removes the container (stopping it if it still runs).
func (c *Container) Remove(ctx context.Context) error { return c.e.Remove(ctx, c.ID) }

// Remove removes container id, running or not; a container already gone is
// not an error.
func (e *Engine) Remove(ctx context.Context, id string) error {
	if err := e.c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("removing container %s: %s", shortID(id), oneline.Of(err))
	}
	return nil
}

// Labelled lists the containers (running or not) whose label key has value.
func (e *Engine) Labelled(ctx context.Context, key, value string) ([]container.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", key+"="+value))
	cs, err := e.c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers labelled %s=%s: %s", key, value, oneline.Of(err))
	}
	return cs, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

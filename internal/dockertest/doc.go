// Package dockertest gives tests a real Docker engine, the offline images
// they run, and a static clearml-agent binary to bind-mount into containers.
//
// Engine returns a Handle on the engine at $DOCKER_HOST or, when that is
// unset, at the private test engine of scripts/test-dockerd.sh
// (unix:///run/clearml-test-docker.sock, started by scripts/test.sh); it never
// falls back to the system's /var/run/docker.sock. The Handle's Client is a
// github.com/docker/docker/client negotiated to the engine's API version.
// Engine also makes sure BusyboxImage and PythonImage exist, running
// scripts/docker-images.sh once per test process when one is missing (that
// script builds them offline from busybox-static and debootstrap, caches the
// root filesystems under /var/cache/clearml-agent-test and serialises
// parallel callers with flock).
//
// When no engine answers, or the images are missing and cannot be built
// without root, Engine skips the test with the command that fixes it, except
// under CI=true, where it fails the test: in CI a test that needs a tool must
// never pass by skipping.
//
// AgentBinary builds a static clearml-agent (CGO_ENABLED=0, so no NVML) once
// per test process for bind-mounting into containers. UniqueLabel and
// RemoveContainersOnCleanup let a test find and remove every container it
// (or the agent under test) created; Run runs one container to completion.
//
// It owns only the engine, the test images and the static binary. It must
// not know how the agent builds its docker command lines or container
// specs (agent/docker does), and it is only for tests: it calls testing.TB.
package dockertest

// Package docker runs tasks in containers (docker mode, reference sections 4
// and 5).
//
// The spec half (image.go, args.go, merge.go, apply.go, gpus.go, name.go,
// spec.go, describe.go) is pure: it
// turns a task's container section, the daemon's flags and the docker
// settings (config.DockerSettings) into one ContainerCreate request. It owns:
// choosing the image (task, match rules, --docker, CLEARML_DOCKER_IMAGE,
// agent.default_docker) and whether it is written back to the task; parsing the
// `docker run` options users write in agent.extra_docker_arguments and in task
// container arguments into API fields, merging and filtering them the way the
// Python agent does, and refusing the ones that would let a task mount the
// agent's configuration, state or docker socket; the GPU device requests; the
// mounts of the static agent binary, its configuration, the host caches and
// SSH; the environment, labels, name and entrypoint of the container; and a
// masked description of it for the task log. Its only side effects are reading
// --env-file and seccomp profile files and creating the cache directories.
//
// The spec half must not talk to the engine or to the ClearML server, read the
// process environment (callers pass it), or install anything in the container:
// the same static agent binary, mounted read-only, runs `execute` inside.
//
// The engine half (engine.go) creates, starts, attaches to, waits for, stops
// and removes containers through the Docker API.
package docker

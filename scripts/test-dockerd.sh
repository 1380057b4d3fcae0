#!/usr/bin/env bash
# test-dockerd.sh: a private Docker engine for the tests, beside (never instead of) the system's Docker.
#
#   scripts/test-dockerd.sh start   start it unless something already answers on its socket; waits for the API
#   scripts/test-dockerd.sh stop    stop it, if this script started it (a daemon started by hand is left alone)
#   scripts/test-dockerd.sh host    print its DOCKER_HOST
#
# Socket unix:///run/clearml-test-docker.sock, pid file /run/clearml-test-dockerd.pid, data under
# /var/lib/clearml-test-docker; exec root, config, trust key and log under /run/clearml-test-docker. It never
# uses /var/run/docker.sock, /etc/docker or /var/lib/docker (only dockerd's plugin directory /run/docker/plugins,
# empty, is shared), and runs with --iptables=false --bridge=none --storage-driver=vfs so it changes nothing
# on the host's network. Containers have no network of their own: use --network host to reach a server on the
# host. If the host runs its own containerd, dockerd uses it under separate namespaces (clearml-test,
# clearml-test-plugins).
#
# A dockerd left behind by an earlier run is reused if it answers, and killed and replaced if it does not.
# start and stop are serialised with flock. Needs root (apt-get install -y docker.io).
set -euo pipefail

sock=/run/clearml-test-docker.sock
host=unix://$sock
pidfile=/run/clearml-test-dockerd.pid
data=/var/lib/clearml-test-docker
state=/run/clearml-test-docker
marker=$state/started-by-test-dockerd
log=$state/dockerd.log
lock=/run/clearml-test-dockerd.lock
api_wait=60 # seconds for the API to answer after starting dockerd

# The CLI must not pick up a context, TLS settings or another host from the environment.
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_HOST

say() { printf 'test-dockerd: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

# answers prints the server version when the API answers on the socket.
answers() {
	[[ -S $sock ]] || return 1
	timeout 10 docker -H "$host" version --format '{{.Server.Version}}' 2>/dev/null
}

# is_dockerd says whether pid is a live dockerd process.
is_dockerd() {
	[[ -n $1 ]] && kill -0 "$1" 2>/dev/null && [[ $(cat "/proc/$1/comm" 2>/dev/null) == dockerd ]]
}

# kill_daemon stops the dockerd with pid $1: SIGTERM (it stops its containers and its containerd), then
# SIGKILL after 45 s.
kill_daemon() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	kill -CONT "$pid" 2>/dev/null || true # a stopped (SIGSTOP) daemon cannot act on SIGTERM
	for ((i = 0; i < 450; i++)); do
		is_dockerd "$pid" || return 0
		sleep 0.1
	done
	say "dockerd (pid $pid) still running 45 s after SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		is_dockerd "$pid" || return 0
		sleep 0.1
	done
	die "dockerd (pid $pid) survived SIGKILL"
}

start() {
	[[ $(id -u) -eq 0 ]] || die "must run as root (dockerd); rerun with sudo"
	command -v dockerd >/dev/null || die "dockerd not found; apt-get install -y docker.io"
	command -v docker >/dev/null || die "docker CLI not found; apt-get install -y docker.io"
	exec 9>"$lock"
	flock -w 120 9 || die "another start or stop holds $lock for over 120 s"

	local v pid i
	if v=$(answers); then
		say "reusing dockerd $v on $host"
		return 0
	fi
	pid=$(cat "$pidfile" 2>/dev/null || true)
	if is_dockerd "$pid"; then
		say "dockerd (pid $pid) from an earlier run does not answer on $host; replacing it"
		kill_daemon "$pid"
	fi
	rm -f "$pidfile"

	mkdir -p "$state" "$data"
	# Our own config file, not /etc/docker/daemon.json. dockerd before 23.0 writes a trust key, by default to
	# /etc/docker/key.json; newer ones refuse that key.
	local major
	major=$(dockerd --version | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
	if [[ -n $major && $major -lt 23 ]]; then
		printf '{"deprecated-key-path": "%s"}\n' "$state/key.json" >"$state/daemon.json"
	else
		printf '{}\n' >"$state/daemon.json"
	fi
	# setsid: a Ctrl-C in the terminal running the tests must not kill the daemon behind the stop step.
	setsid dockerd --host "$host" --pidfile "$pidfile" --data-root "$data" --exec-root "$state/exec" \
		--config-file "$state/daemon.json" --containerd-namespace clearml-test \
		--containerd-plugins-namespace clearml-test-plugins \
		--iptables=false --bridge=none --storage-driver=vfs </dev/null >>"$log" 2>&1 9>&- &
	pid=$!
	printf '%s\n' "$pid" >"$marker"
	for ((i = 0; i < api_wait * 10; i++)); do
		if v=$(answers); then
			say "dockerd $v (pid $pid) answers on $host after $((i / 10)).$((i % 10)) s; log: $log"
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$marker"
			die "dockerd exited before answering; last lines of $log:
$(tail -n 30 "$log")"
		fi
		sleep 0.1
	done
	kill_daemon "$pid"
	rm -f "$marker"
	die "dockerd (pid $pid) did not answer on $host within $api_wait s; last lines of $log:
$(tail -n 30 "$log")"
}

stop() {
	[[ $(id -u) -eq 0 ]] || die "must run as root; rerun with sudo"
	exec 9>"$lock"
	flock -w 120 9 || die "another start or stop holds $lock for over 120 s"
	if [[ ! -f $marker ]]; then
		say "no dockerd started by this script; nothing to stop"
		return 0
	fi
	local pid
	pid=$(cat "$pidfile" 2>/dev/null || cat "$marker")
	if is_dockerd "$pid"; then
		kill_daemon "$pid"
		say "stopped dockerd (pid $pid)"
	fi
	rm -f "$marker" "$pidfile"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
host) printf '%s\n' "$host" ;;
*) die "usage: $0 start|stop|host" ;;
esac

# ClearML agents in this notebook (clearml-agent-go): paste this whole file into ONE cell and run it.
#
# For Colab-like VMs where systemd is not PID 1: it writes the credentials (mode 0600) and clearml.conf,
# starts `agent-provision run` (the agents as supervised child processes) in the background, shows them
# coming up, then keeps the cell busy while they work. Stopping the cell (the stop button, or
# Runtime > Interrupt) drains them: a running task finishes, no new one starts; interrupting again aborts
# the running tasks. Task processes plot headless (MPLBACKEND=Agg).
# Python 3 standard library only. docs/notebook.md describes every setting.
#
# Settings: Colab's Secrets panel (the key icon on the left; give this notebook access), else environment
# variables of the same names. An environment variable wins over a secret.
#   CLEARML_API_HOST, CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY   required
#   CLEARML_WEB_HOST, CLEARML_FILES_HOST                               optional
#   CLEARML_AGENT_GIT_USER, CLEARML_AGENT_GIT_PASS                     optional (private task repositories)
#   CLEARML_QUEUE        queue the agents serve (default "default")
#   CLEARML_AGENT_GPUS   "0", "0,1" or "all": one agent per GPU; empty: one CPU agent
#   the binaries, one of:
#   CLEARML_AGENT_GO_BIN_DIR                    a directory that already holds agent-provision and clearml-agent
#   CLEARML_AGENT_GO_URL, CLEARML_AGENT_GO_SHA256   a release tarball and its sha256, installed by install.sh
#                                               (CLEARML_AGENT_GO_INSTALLER: its path or URL; default: next to
#                                               this file, else install.sh next to the tarball's URL)
#   CLEARML_AGENT_GO_PREFIX      install prefix (default ~/.local/clearml-agent-go; no root needed)
#   CLEARML_NOTEBOOK_STATE_DIR   credentials, clearml.conf, agent state and supervisor.log
#                                (default ~/.clearml-agent-go)
#   CLEARML_NOTEBOOK_BACKGROUND  "1": return once the agents are up and leave them running
#   CLEARML_NOTEBOOK_READY_TIMEOUT  seconds to wait for the agents to register (default 300)
#   CLEARML_NOTEBOOK_DRAIN_TIMEOUT  seconds a drain may take before running tasks are aborted (default 3600)

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def _setting(name, default=""):
    value = os.environ.get(name, "")
    if not value:
        try:
            from google.colab import userdata  # only in Colab

            value = userdata.get(name) or ""
        except Exception:  # not Colab, no such secret, or no access granted
            value = ""
    value = str(value).strip()
    return value if value else default


CLEARML_API_HOST = _setting("CLEARML_API_HOST")
CLEARML_API_ACCESS_KEY = _setting("CLEARML_API_ACCESS_KEY")
CLEARML_API_SECRET_KEY = _setting("CLEARML_API_SECRET_KEY")
CLEARML_WEB_HOST = _setting("CLEARML_WEB_HOST")
CLEARML_FILES_HOST = _setting("CLEARML_FILES_HOST")
CLEARML_AGENT_GIT_USER = _setting("CLEARML_AGENT_GIT_USER")
CLEARML_AGENT_GIT_PASS = _setting("CLEARML_AGENT_GIT_PASS")
CLEARML_QUEUE = _setting("CLEARML_QUEUE", "default")
CLEARML_AGENT_GPUS = _setting("CLEARML_AGENT_GPUS")
CLEARML_AGENT_GO_BIN_DIR = _setting("CLEARML_AGENT_GO_BIN_DIR")
CLEARML_AGENT_GO_URL = _setting("CLEARML_AGENT_GO_URL")
CLEARML_AGENT_GO_SHA256 = _setting("CLEARML_AGENT_GO_SHA256")
CLEARML_AGENT_GO_INSTALLER = _setting("CLEARML_AGENT_GO_INSTALLER")
CLEARML_AGENT_GO_PREFIX = os.path.expanduser(_setting("CLEARML_AGENT_GO_PREFIX", "~/.local/clearml-agent-go"))
CLEARML_NOTEBOOK_STATE_DIR = os.path.expanduser(_setting("CLEARML_NOTEBOOK_STATE_DIR", "~/.clearml-agent-go"))
CLEARML_NOTEBOOK_BACKGROUND = _setting("CLEARML_NOTEBOOK_BACKGROUND") in ("1", "true", "yes")
CLEARML_NOTEBOOK_READY_TIMEOUT = _setting("CLEARML_NOTEBOOK_READY_TIMEOUT", "300")
CLEARML_NOTEBOOK_DRAIN_TIMEOUT = _setting("CLEARML_NOTEBOOK_DRAIN_TIMEOUT", "3600")


def _clearml_notebook_agents():
    name = "clearml notebook"

    def fail(message):
        # One line, no traceback: SystemExit stops the cell (a script exits 1).
        raise SystemExit("%s: %s" % (name, message))

    def say(message):
        print(message, flush=True)

    # 1. Settings: every missing one named at once.
    missing = [n for n, v in (("CLEARML_API_HOST", CLEARML_API_HOST),
                              ("CLEARML_API_ACCESS_KEY", CLEARML_API_ACCESS_KEY),
                              ("CLEARML_API_SECRET_KEY", CLEARML_API_SECRET_KEY)) if not v]
    if CLEARML_AGENT_GO_URL and not CLEARML_AGENT_GO_SHA256:
        missing.append("CLEARML_AGENT_GO_SHA256 (the sha256 of CLEARML_AGENT_GO_URL)")
    installed = os.path.join(CLEARML_AGENT_GO_PREFIX, "bin")
    if not CLEARML_AGENT_GO_BIN_DIR and not CLEARML_AGENT_GO_URL and not (
            os.path.isfile(os.path.join(installed, "agent-provision")) or shutil.which("agent-provision")):
        missing.append("CLEARML_AGENT_GO_BIN_DIR or CLEARML_AGENT_GO_URL with CLEARML_AGENT_GO_SHA256")
    if missing:
        fail("missing %s; set them in the Secrets panel (key icon on the left, notebook access on) "
             "or as environment variables" % ", ".join(missing))
    for n, v in (("CLEARML_NOTEBOOK_READY_TIMEOUT", CLEARML_NOTEBOOK_READY_TIMEOUT),
                 ("CLEARML_NOTEBOOK_DRAIN_TIMEOUT", CLEARML_NOTEBOOK_DRAIN_TIMEOUT)):
        try:
            if float(v) <= 0:
                raise ValueError
        except ValueError:
            fail("%s=%r is not a positive number of seconds; fix it or leave it unset" % (n, v))
    for n, v in (("CLEARML_API_ACCESS_KEY", CLEARML_API_ACCESS_KEY), ("CLEARML_API_SECRET_KEY", CLEARML_API_SECRET_KEY),
                 ("CLEARML_AGENT_GIT_USER", CLEARML_AGENT_GIT_USER), ("CLEARML_AGENT_GIT_PASS", CLEARML_AGENT_GIT_PASS)):
        if "\n" in v or "\r" in v:
            fail("%s holds a line break; set it again as one line" % n)

    state = CLEARML_NOTEBOOK_STATE_DIR
    os.makedirs(state, mode=0o700, exist_ok=True)
    log_path = os.path.join(state, "supervisor.log")
    pid_path = os.path.join(state, "supervisor.pid")

    # Agents of an earlier run of this cell still running: two sets would serve the queue twice.
    try:
        with open(pid_path) as f:
            old = int(f.read().strip() or 0)
        with open("/proc/%d/stat" % old) as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        with open("/proc/%d/cmdline" % old, "rb") as f:
            ours = b"agent-provision" in f.read()
        if ours and not zombie:
            fail("agents of an earlier run are still running (agent-provision pid %d, log %s); stop them first: "
                 "!kill -TERM %d (drain), then run this cell again" % (old, log_path, old))
    except (OSError, ValueError, IndexError):
        pass

    # 2. The binaries.
    if CLEARML_AGENT_GO_BIN_DIR:
        bindir = os.path.abspath(os.path.expanduser(CLEARML_AGENT_GO_BIN_DIR))
        for b in ("agent-provision", "clearml-agent"):
            if not os.access(os.path.join(bindir, b), os.X_OK):
                fail("CLEARML_AGENT_GO_BIN_DIR=%s has no executable %s; point it at the directory holding "
                     "agent-provision and clearml-agent" % (bindir, b))
        say("binaries: %s" % bindir)
    elif CLEARML_AGENT_GO_URL:
        installer = CLEARML_AGENT_GO_INSTALLER
        if not installer:
            here = globals().get("__file__")
            beside = os.path.join(os.path.dirname(os.path.abspath(here)), "install.sh") if here else ""
            if beside and os.path.isfile(beside):
                installer = beside
            elif "://" in CLEARML_AGENT_GO_URL:
                installer = CLEARML_AGENT_GO_URL.rsplit("/", 1)[0] + "/install.sh"
            else:
                installer = os.path.join(os.path.dirname(os.path.abspath(CLEARML_AGENT_GO_URL)), "install.sh")
        tmp = None
        try:
            if "://" in installer:
                fd, tmp = tempfile.mkstemp(prefix="clearml-install-", suffix=".sh")
                try:
                    with os.fdopen(fd, "wb") as f, urllib.request.urlopen(installer, timeout=60) as r:
                        shutil.copyfileobj(r, f)
                except Exception as e:
                    fail("cannot download the installer %s: %s; set CLEARML_AGENT_GO_INSTALLER to the path or URL "
                         "of install.sh" % (installer, " ".join(str(e).split())))
                script = tmp
            else:
                script = installer
                if not os.path.isfile(script):
                    fail("no installer at %s; set CLEARML_AGENT_GO_INSTALLER to the path or URL of install.sh" % script)
            say("installing %s into %s" % (CLEARML_AGENT_GO_URL, CLEARML_AGENT_GO_PREFIX))
            r = subprocess.run(["sh", script, "--prefix", CLEARML_AGENT_GO_PREFIX, "--sha256", CLEARML_AGENT_GO_SHA256,
                                CLEARML_AGENT_GO_URL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
        finally:
            if tmp:
                os.unlink(tmp)
        out = r.stdout.strip().splitlines()
        if r.returncode != 0:
            # install.sh says what is wrong on one line.
            fail(out[-1] if out else "install.sh exited with status %d" % r.returncode)
        say(out[-1])
        bindir = installed
    elif os.path.isfile(os.path.join(installed, "agent-provision")):
        bindir = installed
        say("binaries: %s (installed earlier)" % bindir)
    else:
        bindir = os.path.dirname(shutil.which("agent-provision"))
        say("binaries: %s (from PATH)" % bindir)

    # 3. Credentials (0600: agent-provision refuses anything looser) and the supervisor.
    creds = os.path.join(state, "credentials")
    lines = ["%s=\"%s\"\n" % (k, v.replace("\\", "\\\\").replace('"', '\\"')) for k, v in (
        ("CLEARML_API_ACCESS_KEY", CLEARML_API_ACCESS_KEY), ("CLEARML_API_SECRET_KEY", CLEARML_API_SECRET_KEY),
        ("CLEARML_AGENT_GIT_USER", CLEARML_AGENT_GIT_USER), ("CLEARML_AGENT_GIT_PASS", CLEARML_AGENT_GIT_PASS)) if v]
    fd, tmp = tempfile.mkstemp(dir=state, prefix=".credentials.")
    with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
        f.writelines(lines)
    os.replace(tmp, creds)

    # agent-provision run takes PREFIX/bin/clearml-agent: a bin dir not named bin gets a PREFIX of links.
    prefix = os.path.dirname(bindir)
    if os.path.basename(bindir) != "bin":
        prefix = os.path.join(state, "prefix")
        os.makedirs(os.path.join(prefix, "bin"), exist_ok=True)
        for b in ("clearml-agent", "clearml-agent-static"):
            link = os.path.join(prefix, "bin", b)
            if os.path.lexists(link):
                os.unlink(link)
            if os.path.exists(os.path.join(bindir, b)):
                os.symlink(os.path.join(bindir, b), link)

    argv = [os.path.join(bindir, "agent-provision"), "run",
            "--credentials-file", creds, "--api-host", CLEARML_API_HOST, "--queue", CLEARML_QUEUE,
            "--state-dir", state, "--config", os.path.join(state, "clearml.conf"),
            "--prefix", prefix]
    if CLEARML_WEB_HOST:
        argv += ["--web-host", CLEARML_WEB_HOST]
    if CLEARML_FILES_HOST:
        argv += ["--files-host", CLEARML_FILES_HOST]
    argv += ["--gpus", CLEARML_AGENT_GPUS] if CLEARML_AGENT_GPUS else ["--cpu-agents", "1"]
    env = dict(os.environ)
    for k in ("CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "CLEARML_AGENT_GIT_USER", "CLEARML_AGENT_GIT_PASS",
              "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(k, None)  # the keys are in the credentials file; not in every task's environment
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    # Every task process plots headless. (The upstream tutorial's `!export MPLBACKEND=TkAg` runs in a
    # throw-away shell and changes nothing.)
    env["MPLBACKEND"] = "Agg"
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=state, start_new_session=True)  # own session: only this cell signals it
    with open(pid_path, "w") as f:
        f.write("%d\n" % proc.pid)
    agents_text = "GPU(s) %s" % CLEARML_AGENT_GPUS if CLEARML_AGENT_GPUS else "1 CPU agent"
    say("started agent-provision run (pid %d): %s, queue %s, server %s; log %s"
        % (proc.pid, agents_text, CLEARML_QUEUE, CLEARML_API_HOST, log_path))

    # 4. Show the agents coming up: the supervisor's lines, until every agent has registered (READY).
    stamp = r"\d\d:\d\d:\d\d (\S+): "
    supervising = re.compile(r"^supervising (\d+) agent\(s\)")
    ready_re = re.compile("^" + stamp + "ready$")
    started_re = re.compile("^" + stamp + "started, pid")
    worker_re = re.compile(r'^Worker "([^"]+)" - Listening to queues: (.*)$')
    shown = re.compile("^(" + stamp + "|supervising |warning: |note: |Worker \"|agent-provision: |error: )")
    log = open(log_path, "r", errors="replace")
    log.seek(start)
    pending = [""]

    def read_lines():
        chunk = log.read()
        if not chunk:
            return []
        parts = (pending[0] + chunk).split("\n")
        pending[0] = parts.pop()
        return parts

    def tail(n=25):
        with open(log_path, "r", errors="replace") as f:
            f.seek(start)
            return "".join(f.readlines()[-n:])

    want, ready, workers, names = None, [], {}, []
    deadline = time.monotonic() + float(CLEARML_NOTEBOOK_READY_TIMEOUT)
    warned = False

    def follow(show_all):
        nonlocal want
        for line in read_lines():
            m = supervising.match(line)
            if m:
                want = int(m.group(1))
            m = started_re.match(line)
            if m and m.group(1) not in names:
                names.append(m.group(1))
            m = worker_re.match(line)
            if m:
                workers[m.group(1).rsplit(":", 1)[-1]] = (m.group(1), m.group(2))
            m = ready_re.match(line)
            if m and m.group(1) not in ready:
                ready.append(m.group(1))
            if show_all or shown.match(line):
                say("  " + line)

    try:
        while want is None or len(ready) < want:
            follow(False)
            if proc.poll() is not None:
                follow(False)
                sys.stdout.write("--- the last lines of %s:\n%s" % (log_path, tail()))
                fail("agent-provision run exited with status %d before the agents were ready; the log's last "
                     "lines are above (%s)" % (proc.returncode, log_path))
            if not warned and time.monotonic() > deadline:
                warned = True
                say("warning: %s of %s agent(s) ready after %ss; still waiting (the status lines above say why)"
                    % (len(ready), want if want is not None else "?", CLEARML_NOTEBOOK_READY_TIMEOUT))
                if CLEARML_NOTEBOOK_BACKGROUND:
                    break
            time.sleep(0.2)
        for n in ready:
            w = workers.get(n)
            say("ready: %s" % ("%s as worker %s on queue(s) %s" % (n, w[0], w[1]) if w else n))
    except KeyboardInterrupt:
        say("interrupted while starting: stopping the agents")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            say("killing the agents")
            proc.send_signal(signal.SIGINT)  # the second signal aborts the tasks, a third kills
            time.sleep(0.5)  # (one pending signal of a kind: two at once would count as one)
            proc.send_signal(signal.SIGINT)
            proc.wait()
        fail("stopped before the agents were ready (agent-provision exited with status %d)" % proc.returncode)

    if CLEARML_NOTEBOOK_BACKGROUND:
        log.close()
        say("agents running in the background (agent-provision pid %d, log %s); stop them with: "
            "!kill -TERM %d (drain: running tasks finish), a second kill -TERM aborts running tasks"
            % (proc.pid, log_path, proc.pid))
        return proc

    # 5. Keep the cell busy while they work; an interrupt drains, a second aborts the running tasks.
    say("agents running; interrupt this cell (stop button) to stop them: the first interrupt drains (running "
        "tasks finish, no new ones start), a second aborts the running tasks")
    signals = 0
    deadline = None
    while True:
        try:
            while proc.poll() is None:
                follow(False)
                if deadline is not None and time.monotonic() > deadline and signals < 3:
                    signals += 1
                    say("the drain is taking longer than %ss: aborting the running tasks (signal %d to agent-provision)"
                        % (CLEARML_NOTEBOOK_DRAIN_TIMEOUT, signals))
                    proc.send_signal(signal.SIGINT)
                    deadline = time.monotonic() + 60
                time.sleep(0.2)
            break
        except KeyboardInterrupt:
            signals += 1
            if signals == 1:
                say("stopping: draining the agents (SIGTERM to agent-provision pid %d); interrupt again to abort "
                    "running tasks" % proc.pid)
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + float(CLEARML_NOTEBOOK_DRAIN_TIMEOUT)
            elif signals == 2:
                say("aborting the running tasks (SIGINT to agent-provision pid %d); interrupt again to kill them"
                    % proc.pid)
                proc.send_signal(signal.SIGINT)
                deadline = time.monotonic() + 60
            else:
                say("killing the agents (SIGINT a third time)")
                proc.send_signal(signal.SIGINT)
                deadline = None
    follow(False)
    log.close()
    if proc.returncode != 0:
        fail("agent-provision exited with status %d; see %s" % (proc.returncode, log_path))
    say("clearml agents stopped (agent-provision exited with status 0)")
    return proc


_clearml_agents = _clearml_notebook_agents()

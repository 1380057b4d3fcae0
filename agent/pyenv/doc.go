// Package pyenv builds the Python virtual environment a task runs in, the way
// the Python clearml-agent does in venv mode (reference sections 3.3 and 3.4).
//
// It owns: finding the interpreter asked for by script.binary ("python3.10"
// tries python3.10, python3, python and checks --version), creating the venv
// with `python -m venv` under <venvs_dir>/<major.minor>, installing the task's
// pip requirements with `python -m pip install -r`, the venv cache
// (<venvs_cache>/<sha256 key>, one file lock per key, LRU beyond max_entries)
// and `pip freeze` for tasks.set_requirements.
//
// Cache design: a cache entry is a complete venv. A hit copies it to the task's
// venv directory and rewrites the absolute paths venv tools write into
// bin/ (script shebangs, activate scripts) and pyvenv.cfg from the entry's
// path to the task's, so the task owns a private, writable venv and the entry
// is never touched by a running task. Site-packages holds no absolute paths
// for the requirements we cache (requirements with -r, -e, git+ or file: are
// never cached). A miss installs into the task's venv and then stores a copy
// (relocated the same way) under the key, written to a temporary name and
// renamed, all under the key's lock, so concurrent tasks with the same
// requirements wait and then hit.
//
// Fast path: a task without requirements gets `python -m venv --without-pip`
// (about a tenth of a second) and pip never runs.
//
// It must not: talk to the ClearML server, clone code, or install anything
// outside the venv (no pip upgrade of the base interpreter, no network access
// other than the pip indexes it is given).
package pyenv

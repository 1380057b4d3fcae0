// Package venv builds the Python virtual environment a task runs in, the way
// the Python clearml-agent does in venv mode (reference sections 3.3 and 3.4).
//
// It owns: finding the interpreter asked for by script.binary ("python3.10"
// tries python3.10, python3, python and checks --version), creating the venv
// with `python -m venv` under <venvs_dir>/<major.minor>, installing the
// task's packages, the venv cache (<venvs_cache>/<sha256 key>, one file lock
// per key, LRU beyond max_entries) and `pip freeze` for
// tasks.set_requirements.
//
// Installing (agent.package_manager.*), in order:
//   - type: pip, uv or poetry. uv and poetry must be on PATH; when the one
//     configured is missing, Ensure fails at once naming the setting (no
//     fallback to pip). poetry installs a poetry project (poetry.lock, or a
//     [tool.poetry] pyproject.toml) found in the working dir or repository
//     root into the task's venv ($VIRTUAL_ENV), after checking that
//     poetry.lock matches pyproject.toml; without such a project pip installs
//     the requirements. uv runs `uv sync --locked` for a uv.lock, else
//     `uv pip install` for the requirements.
//   - pip_version: `pip install --upgrade "pip<spec>"` before anything else;
//     empty leaves the venv's pip alone.
//   - priority_packages, priority_optional_packages: the requirements they
//     name are installed first, one by one; an optional one that fails is
//     left out with a warning, any other failure fails the environment.
//   - the requirements, with `pip install -r` run in Spec.RequirementsDir
//     (the requirements file's directory, or the repository root), so -r
//     files, -e . and local paths resolve the way `pip install -r` run there
//     resolves them. A repository's requirements.txt is read in place.
//
// Which requirements (stored on the task or the repository's
// requirements.txt) is the caller's choice (agent/task).
//
// Cache design: a cache entry is a complete venv. A hit copies it to the task's
// venv directory and rewrites the absolute paths venv tools write into
// bin/ (script shebangs, activate scripts) and pyvenv.cfg from the entry's
// path to the task's, so the task owns a private, writable venv and the entry
// is never touched by a running task. Site-packages holds no absolute paths
// for the requirements we cache (requirements with -r, -e, -f, git+, file:
// or a local path are never cached, and neither are uv or poetry venvs). A
// miss installs into the task's venv and then stores a copy (relocated the
// same way) under the key, written to a temporary name and renamed, all
// under the key's lock, so concurrent tasks with the same requirements wait
// and then hit.
//
// Fast path: a task without requirements gets `python -m venv --without-pip`
// (about a tenth of a second) and pip never runs.
//
// It must not: talk to the ClearML server, clone code, or install anything
// outside the venv (no pip upgrade of the base interpreter, no network access
// other than the package indexes it is given or the project names).
package venv

package task

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/shlex"

	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/venv"
)

type kind int

const (
	kindPython kind = iota
	kindShell
)

// entryKind picks the runner from the basename of script.binary (reference
// 3.1): python* (or nothing) runs python, bash/zsh/sh a shell.
func entryKind(binary string) kind {
	switch filepath.Base(strings.TrimSpace(binary)) {
	case "bash", "sh", "zsh":
		return kindShell
	}
	return kindPython
}

// buildCommand returns the process spec for the entry point in dir.
func buildCommand(k kind, env *venv.Env, dir, entry string, environ []string) (process.Spec, error) {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return process.Spec{}, errors.New("the task has no entry point (script.entry_point); set it to a script or '-m module'")
	}
	spec := process.Spec{Dir: dir, Env: environ}
	getenv := func(k string) string {
		for i := len(environ) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(environ[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	if k == kindShell {
		shell := getenv("SHELL")
		if shell == "" {
			shell = "/bin/bash"
		}
		if _, err := os.Stat(shell); err != nil {
			shell = "/bin/sh"
		}
		spec.Path = shell
		if fileExists(filepath.Join(dir, entry)) {
			spec.Args = []string{entry}
		} else {
			spec.Args = []string{"-c", entry}
		}
		return spec, nil
	}
	spec.Path = env.Python
	if fileExists(filepath.Join(dir, entry)) {
		spec.Args = []string{"-u", entry}
		return spec, nil
	}
	words, err := shlex.Split(entry)
	if err != nil || len(words) == 0 {
		return process.Spec{}, fmt.Errorf("entry point %q cannot be parsed: %v", entry, err)
	}
	if words[0] == "-m" {
		for i := range words {
			words[i] = os.Expand(words[i], getenv)
		}
		spec.Args = append([]string{"-u"}, words...)
		return spec, nil
	}
	if !fileExists(filepath.Join(dir, words[0])) {
		return process.Spec{}, fmt.Errorf("entry point %q not found in %s; check script.entry_point and script.working_dir", words[0], dir)
	}
	spec.Args = append([]string{"-u"}, words...)
	return spec, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

package main

import (
	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/provision"
)

// writeConf writes clearml.conf for supervisor mode, owned by whoever runs it.
func writeConf(f provision.FileChange) error {
	return config.WriteFileAtomic(f.Path, f.New, f.Mode, -1, -1)
}

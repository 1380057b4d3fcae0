// Package config loads and writes clearml.conf the way the Python clearml-agent
// does.
//
// It owns: the packaged defaults (defaults.conf), choosing the file
// (--config-file > CLEARML_CONFIG_FILE > ~/clearml.conf > ~/trains.conf), the
// dialect pre-processing that lets github.com/gurkankaymak/hocon read real
// clearml.conf files (unquoted URLs, comments in lists, includes, ${?ENV}), the
// CLEARML_AGENT__* overrides and the fixed environment variables, the origin of
// every value, masking secrets, and writing clearml.conf (Render,
// MergeAgentSection, WriteFileAtomic).
//
// It must not: talk to the server, read flags, print, or know about workers,
// tasks or systemd. Callers pass the environment in LoadOptions so tests never
// depend on the process environment.
package config

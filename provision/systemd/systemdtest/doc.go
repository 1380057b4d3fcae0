// Package systemdtest provides Fake, an in-memory systemd.Manager for unit
// tests of code that provisions agents. It records calls and simulates unit
// state; it must not talk to a real systemd or touch the file system.
package systemdtest

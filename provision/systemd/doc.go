// Package systemd applies agent units to a running systemd through its D-Bus
// API (daemon-reload, enable/disable, start/stop/restart with job results,
// waiting for Type=notify units to report READY) and enables units offline in
// an image root by running `systemctl --root=DIR enable`.
//
// It owns talking to systemd only. It must not render unit files (package
// unitgen does), write clearml.conf or environment files (package provision
// does), or shell out to systemctl for anything the D-Bus API offers; it
// execs journalctl, to attach a failed unit's last log lines to the error, and
// systemctl --root for image builds, which have no bus.
//
// Consumers depend on the small Manager interface; DBus implements it against
// the system bus and package systemdtest provides an in-memory fake.
package systemd

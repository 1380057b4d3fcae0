// Package nspawn is a test helper that boots a Debian rootfs with real
// systemd as PID 1 under systemd-nspawn, so integration tests
// (`//go:build integration`) can exercise systemd, D-Bus, journald and unit
// files without the host's PID 1 being systemd.
//
// Boot takes the cached rootfs built by scripts/nspawn-rootfs.sh, puts a
// throwaway overlay (or copy) on top, boots it, and returns a Machine whose
// Exec runs commands inside every namespace of the container through
// `nsenter -t <pid1> -a`. The container shares the host's network namespace
// (no --private-network): a server a test starts on host 127.0.0.1 is
// reachable from inside at the same address, and ports opened inside are
// visible on the host.
//
// It owns only booting, entering and tearing down containers. It must not
// know about agents, units or provisioning, and it is only for tests: it
// calls testing.TB and needs root. SkipUnlessRoot skips a test with a clear
// reason when a prerequisite is missing, except under CI=true where a missing
// prerequisite fails the test.
package nspawn

// Package e2e holds the boot-to-task end-to-end tests of the deployment
// paths (`//go:build integration`, run as root by scripts/test.sh): a
// Debian 12 rootfs with systemd and cloud-init booted with systemd-nspawn
// from a NoCloud seed rendered by `agent-provision cloud-init`; the Packer
// image path (the template's provisioning script run into a rootfs, then a
// boot with only credentials in the seed); and the notebook bootstrap run in
// the same rootfs without systemd. The ClearML API emulator runs on the
// host; the containers share the host's network.
package e2e

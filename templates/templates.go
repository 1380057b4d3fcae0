// Package templates holds the text files agent-provision renders or ships
// to machines, embedded in the binary: the cloud-init user-data and startup
// script templates (*.tmpl, text/template, rendered by package cloudinit)
// and install.sh, the release-tarball installer (also scripts/install.sh).
//
// It must not: render anything itself, or read files at run time (the
// files are compiled in, so the binary carries the installer it writes).
package templates

import "embed"

// FS holds cloud-config.tmpl, startup.sh.tmpl and install.sh.
//
//go:embed *.tmpl install.sh
var FS embed.FS

// InstallScript returns install.sh, the release-tarball installer.
func InstallScript() []byte {
	b, err := FS.ReadFile("install.sh")
	if err != nil {
		panic("templates: install.sh is not embedded: " + err.Error())
	}
	return b
}

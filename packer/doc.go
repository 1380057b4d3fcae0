// Package packer holds no Go code: its directory is the Packer template
// (clearml-agent.pkr.hcl), its example variables, the build VM's cloud-init
// seed and scripts/provision-image.sh. See README.md. The package's tests
// parse the template with hashicorp/hcl/v2, run the real `packer validate`
// (Debian's packer 1.6.6) and the provisioning script's input checks.
package packer

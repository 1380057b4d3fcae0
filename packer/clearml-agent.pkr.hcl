# Packer template: a Debian 12 image with clearml-agent-go installed and its agents provisioned for a
# first boot that takes the credentials from cloud-init (see README.md).
#
# Written for Packer 1.6.6 (Debian's package): HCL2 with built-in builders only, so no `packer init` and no
# required_plugins block. Pick the target with -only:
#
#   packer build -var-file=my.pkrvars.hcl -only=qemu.debian12 packer/clearml-agent.pkr.hcl
#   packer build -var-file=my.pkrvars.hcl -only=amazon-ebs.debian12 packer/clearml-agent.pkr.hcl
#   packer build -var-file=my.pkrvars.hcl -only=googlecompute.debian12 packer/clearml-agent.pkr.hcl

# ---- the agent ---------------------------------------------------------------------------------------------

variable "agent_tarball" {
  type        = string
  description = "Local path of the release tarball clearml-agent-go_<version>_linux_<arch>.tar.gz (scripts/release.sh prints it); uploaded to the build machine. Its architecture must match the image's."
}

variable "agent_sha256" {
  type        = string
  description = "sha256 of agent_tarball (the first field of its .sha256 file); install.sh refuses the tarball when it does not match."

  validation {
    condition     = length(var.agent_sha256) == 64 && regex_replace(lower(var.agent_sha256), "[0-9a-f]", "") == ""
    error_message = "The agent_sha256 variable must be the tarball's sha256: 64 hex digits (the first field of its .sha256 file)."
  }
}

variable "installer" {
  type        = string
  default     = ""
  description = "Local path of the release installer install.sh; empty means templates/install.sh of this repository (next to this packer/ directory)."
}

variable "api_host" {
  type        = string
  description = "ClearML API server URL the agents register with, e.g. https://api.clear.ml (agent-provision --api-host)."

  validation {
    condition     = substr(var.api_host, 0, 7) == "http://" || substr(var.api_host, 0, 8) == "https://"
    error_message = "The api_host variable must be an http:// or https:// URL, e.g. https://api.clear.ml."
  }
}

variable "web_host" {
  type        = string
  default     = ""
  description = "ClearML web server URL (agent-provision --web-host); empty: agent-provision derives it from api_host."
}

variable "files_host" {
  type        = string
  default     = ""
  description = "ClearML files server URL (agent-provision --files-host); empty: agent-provision derives it from api_host."
}

variable "queue" {
  type        = string
  default     = "default"
  description = "Queue(s) every GPU/CPU agent serves, comma-separated (agent-provision --queue)."
}

variable "gpus" {
  type        = string
  default     = ""
  description = "GPUs of the agents (agent-provision --gpus): 0,1,2,3 (one agent each) or 0,1+2,3 (groups); indices, since the build machine needs no GPU (all needs NVML at build time). Give gpus, cpu_agents or services_agent."
}

variable "cpu_agents" {
  type        = number
  default     = 0
  description = "Number of CPU-only agents (agent-provision --cpu-agents); 0: none."
}

variable "services_agent" {
  type        = bool
  default     = false
  description = "Add a services-mode agent (agent-provision --services-agent)."
}

variable "docker" {
  type        = bool
  default     = false
  description = "Run the agents' tasks in containers (agent-provision --docker); set install_docker too unless the base image has an engine."
}

variable "docker_image" {
  type        = string
  default     = ""
  description = "Default image of the task containers (agent-provision --docker-image, implies docker mode); pre-pulled when prebuild_caches is true."
}

variable "install_docker" {
  type        = bool
  default     = false
  description = "Install Debian's docker.io in the image."
}

variable "prebuild_caches" {
  type        = bool
  default     = false
  description = "Pre-pull docker_image and prepull_images into the image's Docker engine, so the first tasks start without a download (needs an engine: install_docker)."
}

variable "prepull_images" {
  type        = list(string)
  default     = []
  description = "More container images to pre-pull when prebuild_caches is true, e.g. [\"python:3.11-slim\"]."
}

# ---- the image ---------------------------------------------------------------------------------------------

variable "image_name" {
  type        = string
  default     = "clearml-agent-debian12"
  description = "Base name of the image: the qemu disk file <image_name>.qcow2, the AMI <image_name>-<timestamp>, the GCE image <image_name>-<timestamp> in family <image_name> (lower case, digits and dashes for GCE)."
}

variable "disk_size_gb" {
  type        = number
  default     = 16
  description = "Size of the image's root disk in GiB (all sources)."
}

variable "qemu_image_url" {
  type        = string
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  description = "qemu: the Debian 12 cloud image (qcow2) the local build starts from; a URL or a local path (e.g. one downloaded once)."
}

variable "qemu_image_checksum" {
  type        = string
  default     = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
  description = "qemu: checksum of qemu_image_url, as sha512:<hex>, sha256:<hex>, or file:<URL or path of a SHA512SUMS file listing it>. The default downloads the checksum list even during packer validate; offline, give a local file: or sha512: value."
}

variable "qemu_accelerator" {
  type        = string
  default     = "kvm"
  description = "qemu: accelerator, kvm (needs /dev/kvm) or tcg (software emulation, slow)."
}

variable "qemu_output_directory" {
  type        = string
  default     = "out/packer/qemu"
  description = "qemu: directory (relative to where packer runs) that receives <image_name>.qcow2; must not exist yet (or pass -force)."
}

variable "aws_region" {
  type        = string
  default     = "us-east-1"
  description = "amazon-ebs: region the AMI is built and registered in."
}

variable "aws_instance_type" {
  type        = string
  default     = "t3.medium"
  description = "amazon-ebs: instance type of the build machine (a GPU type is not needed to build a GPU image)."
}

variable "aws_source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "amazon-ebs: name filter of the source AMI, among Debian's official AMIs (owner 136693071363); the newest match is used. debian-12-arm64-* (with an arm64 aws_instance_type such as t4g.medium) for an arm64 tarball."
}

variable "gcp_project_id" {
  type        = string
  default     = ""
  description = "googlecompute: project the image is built in (required for that source)."
}

variable "gcp_zone" {
  type        = string
  default     = "us-central1-a"
  description = "googlecompute: zone of the build machine."
}

variable "gcp_machine_type" {
  type        = string
  default     = "e2-standard-2"
  description = "googlecompute: machine type of the build machine."
}

locals {
  # Build inputs on the build machine; removed by the last provisioner.
  remote_dir = "/tmp/clearml-agent-build"
  installer  = var.installer != "" ? var.installer : "${path.root}/../templates/install.sh"
  stamp      = formatdate("YYYYMMDDhhmmss", timestamp())
}

# Local build from Debian's cloud image. The seed ISO (cidata) holds cloud-init user-data that lets packer log in
# as debian/packer for the build; the last provisioner locks that password. Needs qemu-system-x86 and one of
# xorriso, genisoimage or mkisofs on the build host.
source "qemu" "debian12" {
  iso_url          = var.qemu_image_url
  iso_checksum     = var.qemu_image_checksum
  disk_image       = true
  format           = "qcow2"
  disk_size        = "${var.disk_size_gb}G"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.qemu_accelerator
  memory           = 2048
  cpus             = 2
  headless         = true
  output_directory = var.qemu_output_directory
  vm_name          = "${var.image_name}.qcow2"
  cd_files         = ["${path.root}/cloud-init/user-data", "${path.root}/cloud-init/meta-data"]
  cd_label         = "cidata"
  ssh_username     = "debian"
  ssh_password     = "packer"
  ssh_timeout      = "20m"
  shutdown_command = "sudo shutdown -P now"
}

source "amazon-ebs" "debian12" {
  region          = var.aws_region
  instance_type   = var.aws_instance_type
  ssh_username    = "admin"
  ami_name        = "${var.image_name}-${local.stamp}"
  ami_description = "Debian 12 with clearml-agent-go; agents start at first boot once cloud-init delivers the credentials"

  source_ami_filter {
    filters = {
      name                = var.aws_source_ami_name
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.disk_size_gb
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags = {
    Name = var.image_name
  }
}

source "googlecompute" "debian12" {
  project_id              = var.gcp_project_id
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  source_image_family     = "debian-12"
  source_image_project_id = ["debian-cloud"]
  image_name              = "${var.image_name}-${local.stamp}"
  image_family            = var.image_name
  image_description       = "Debian 12 with clearml-agent-go; agents start at first boot once cloud-init delivers the credentials"
  disk_size               = var.disk_size_gb
  ssh_username            = "packer"
}

build {
  sources = [
    "source.qemu.debian12",
    "source.amazon-ebs.debian12",
    "source.googlecompute.debian12",
  ]

  provisioner "shell" {
    inline = ["mkdir -p ${local.remote_dir}"]
  }

  # generated: the tarball is checked when it is uploaded (and by its sha256), not by packer validate, so the
  # template validates before scripts/release.sh has run.
  provisioner "file" {
    source      = var.agent_tarball
    destination = "${local.remote_dir}/clearml-agent.tar.gz"
    generated   = true
  }

  provisioner "file" {
    source      = local.installer
    destination = "${local.remote_dir}/install.sh"
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/provision-image.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} sh {{ .Path }}"
    environment_vars = [
      "AGENT_TARBALL=${local.remote_dir}/clearml-agent.tar.gz",
      "AGENT_SHA256=${var.agent_sha256}",
      "INSTALLER=${local.remote_dir}/install.sh",
      "API_HOST=${var.api_host}",
      "WEB_HOST=${var.web_host}",
      "FILES_HOST=${var.files_host}",
      "QUEUE=${var.queue}",
      "GPUS=${var.gpus}",
      "CPU_AGENTS=${var.cpu_agents}",
      "SERVICES_AGENT=${var.services_agent}",
      "DOCKER_MODE=${var.docker}",
      "DOCKER_IMAGE=${var.docker_image}",
      "INSTALL_DOCKER=${var.install_docker}",
      "PREBUILD_CACHES=${var.prebuild_caches}",
      "PREPULL_IMAGES=${join(" ", var.prepull_images)}",
    ]
  }

  provisioner "shell" {
    inline = ["sudo rm -rf ${local.remote_dir}"]
  }

  # The qemu build logged in with a password from the seed; lock it so the image only takes the keys
  # cloud-init installs at first boot.
  provisioner "shell" {
    only   = ["qemu.debian12"]
    inline = ["sudo passwd -l debian"]
  }
}

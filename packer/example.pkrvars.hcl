# Example variables for clearml-agent.pkr.hcl: copy, edit, and pass with -var-file.
# agent_tarball and agent_sha256 come from scripts/release.sh (the tarball and its .sha256 file).
agent_tarball = "out/release/clearml-agent-go_v0.1.0_linux_amd64.tar.gz"
agent_sha256  = "0000000000000000000000000000000000000000000000000000000000000000"

api_host   = "https://api.clear.ml"
web_host   = "https://app.clear.ml"
files_host = "https://files.clear.ml"
queue      = "gpu"
gpus       = "0,1,2,3"

install_docker  = true
docker          = true
docker_image    = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
prebuild_caches = true
prepull_images  = ["python:3.11-slim"]

image_name     = "clearml-agent-debian12"
disk_size_gb   = 32
aws_region     = "eu-west-1"
gcp_project_id = "my-gcp-project"
gcp_zone       = "europe-west1-b"

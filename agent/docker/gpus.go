package docker

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
)

var (
	gpuIndex = regexp.MustCompile(`^[0-9]+$`)
	gpuRange = regexp.MustCompile(`^([0-9]+)-([0-9]+)$`)
	gpuMIG   = regexp.MustCompile(`^([0-9]+)[:.]([0-9]+)$`)
	gpuUUID  = regexp.MustCompile(`^(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]*$`)
)

// maxGPUIndex bounds indices so that a typo like 0-100000 fails fast.
const maxGPUIndex = 1023

// gpuDevices turns the daemon's --gpus value into the engine's device
// requests and the container's NVIDIA_VISIBLE_DEVICES (reference sections
// 4.2 step 2 and 6), as `docker run --gpus` would:
//
//   - cpu-only or "none": no request, NVIDIA_VISIBLE_DEVICES=none (so that an
//     NVIDIA image on a host whose default runtime is nvidia gets no GPU);
//   - "" or "all": every GPU (Count -1), NVIDIA_VISIBLE_DEVICES=all;
//   - a list: exactly those devices. Indices (0), ranges (0-3, expanded), MIG
//     slots (0:1, also written 0.1) and GPU-/MIG- UUIDs.
//
// With skipFlag (CLEARML_DOCKER_SKIP_GPUS_FLAG) only the variable is set.
func gpuDevices(gpus string, cpuOnly, skipFlag bool) ([]container.DeviceRequest, string, error) {
	s := strings.TrimSpace(gpus)
	if cpuOnly || strings.EqualFold(s, "none") {
		return nil, "none", nil
	}
	caps := [][]string{{"gpu"}}
	if s == "" || strings.EqualFold(s, "all") {
		if skipFlag {
			return nil, "all", nil
		}
		return []container.DeviceRequest{{Count: -1, Capabilities: caps}}, "all", nil
	}
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for i, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		pos := i + 1
		switch {
		case tok == "":
			return nil, "", fmt.Errorf("--gpus %q: empty GPU id at position %d; separate ids with single commas, e.g. --gpus 0,1", gpus, pos)
		case gpuIndex.MatchString(tok):
			n, _ := strconv.Atoi(tok)
			if n > maxGPUIndex {
				return nil, "", fmt.Errorf("--gpus %q: GPU index %s at position %d is too large; use the indices nvidia-smi lists", gpus, tok, pos)
			}
			add(strconv.Itoa(n))
		case gpuRange.MatchString(tok):
			m := gpuRange.FindStringSubmatch(tok)
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			if a > b || b > maxGPUIndex {
				return nil, "", fmt.Errorf("--gpus %q: range %s at position %d is not low-high within 0-%d; write e.g. 0-3", gpus, tok, pos, maxGPUIndex)
			}
			for n := a; n <= b; n++ {
				add(strconv.Itoa(n))
			}
		case gpuMIG.MatchString(tok):
			m := gpuMIG.FindStringSubmatch(tok)
			add(m[1] + ":" + m[2])
		case gpuUUID.MatchString(tok):
			add(tok)
		default:
			return nil, "", fmt.Errorf("--gpus %q: %q at position %d is not a GPU index (0), range (0-3), MIG slot (0:1) or UUID (GPU-..., MIG-...); list the devices nvidia-smi -L shows", gpus, tok, pos)
		}
	}
	visible := strings.Join(ids, ",")
	if skipFlag {
		return nil, visible, nil
	}
	return []container.DeviceRequest{{DeviceIDs: ids, Capabilities: caps}}, visible, nil
}

package gpu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Assignment is the device set of one agent.
type Assignment struct {
	// Devices is the value list for NVIDIA_VISIBLE_DEVICES and --gpus, as the
	// user wrote each id: "0", "0:1" (GPU 0, MIG slot 1), "GPU-…", "MIG-…".
	Devices []string
	// Instance is the systemd instance name: "gpu0", "gpu0-1", "gpu0.1",
	// "gpu-GPU-1a2b3c4d".
	Instance string
	// WorkerSuffix is what the Python agent appends to the host name for the
	// worker id: "gpu0", "gpu0,1".
	WorkerSuffix string
}

// maxIndex bounds GPU indices so that a typo like 0-100000 fails fast.
const maxIndex = 1023

var (
	reIndex = regexp.MustCompile(`^[0-9]+$`)
	reRange = regexp.MustCompile(`^([0-9]+)-([0-9]+)$`)
	reMIG   = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
	reUUID  = regexp.MustCompile(`^(GPU|MIG)-[0-9A-Za-z][0-9A-Za-z/-]*$`)
)

// device is one parsed id.
type device struct {
	text  string // as given, e.g. "0", "0:1", "GPU-…"
	index int    // GPU index, -1 when only a UUID is known
	mig   int    // MIG slot, -1 for a whole GPU
	uuid  string // GPU-/MIG- UUID, given or resolved
	pos   int    // 1-based position of the token in the spec
}

// ParseAssignment splits a --gpus spec into one Assignment per agent.
//
// Grammar: ids separated by ',' are one agent each, or perAgent (>1) ids per
// agent in order; when the spec contains '+', '+' separates agents and ','
// separates the ids of one agent ("0,1+2,3" is agents [0,1] and [2,3]). An id
// is an index (0), a range (0-3), a GPU:MIG pair (0:1), a GPU-/MIG- UUID; the
// whole spec may be "all" (every GPU in inv). With inv == nil (no NVML) the
// ids cannot be checked and a warning says so.
func ParseAssignment(spec string, perAgent int, inv *Inventory) ([]Assignment, []string, error) {
	s := strings.TrimSpace(spec)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("--gpus %q: %s", spec, fmt.Sprintf(format, args...))
	}
	if perAgent < 0 {
		return nil, nil, fail("--gpus-per-agent %d is negative; use 1 or more", perAgent)
	}
	if s == "" {
		return nil, nil, fail("no GPU ids; use e.g. --gpus 0,1 or --gpus all")
	}
	var groups [][]device
	var warnings []string
	switch {
	case strings.EqualFold(s, "all"):
		if inv == nil {
			return nil, nil, fmt.Errorf("--gpus all: NVML not found (libnvidia-ml.so); list GPU indices explicitly, e.g. --gpus 0,1")
		}
		if len(inv.GPUs) == 0 {
			return nil, nil, fmt.Errorf("--gpus all: NVML reports no GPUs on this machine; use --cpu-only")
		}
		var flat []device
		for i, g := range inv.GPUs {
			flat = append(flat, device{text: strconv.Itoa(g.Index), index: g.Index, mig: -1, uuid: g.UUID, pos: i + 1})
		}
		var err error
		if groups, err = chunk(flat, perAgent, fail); err != nil {
			return nil, nil, err
		}
	default:
		var err error
		if groups, err = parseGroups(s, perAgent, fail); err != nil {
			return nil, nil, err
		}
		if inv == nil {
			warnings = append(warnings, fmt.Sprintf("--gpus %q: NVML not found, so GPU ids were not checked against the hardware; run `agent-provision gpus` on a host with the NVIDIA driver to verify", spec))
		} else if err := resolve(groups, inv, fail); err != nil {
			return nil, nil, err
		}
	}
	if err := checkOverlap(groups, fail); err != nil {
		return nil, nil, err
	}
	out := make([]Assignment, len(groups))
	seen := map[string]int{}
	for a, g := range groups {
		out[a] = assignment(g)
		if prev, ok := seen[out[a].Instance]; ok {
			return nil, nil, fail("agents %d and %d would both be named %q; use GPU indices instead of UUIDs", prev+1, a+1, out[a].Instance)
		}
		seen[out[a].Instance] = a
	}
	return out, warnings, nil
}

// parseGroups tokenizes s into agents.
func parseGroups(s string, perAgent int, fail func(string, ...any) error) ([][]device, error) {
	plus := strings.Contains(s, "+")
	if plus && perAgent > 1 {
		return nil, fail("groups joined by '+' and --gpus-per-agent %d both say how to split; use one of them", perAgent)
	}
	pos := 0
	var groups [][]device
	for _, part := range strings.Split(s, "+") {
		var group []device
		for _, tok := range strings.Split(part, ",") {
			pos++
			devs, err := parseToken(strings.TrimSpace(tok), pos, fail)
			if err != nil {
				return nil, err
			}
			group = append(group, devs...)
		}
		groups = append(groups, group)
	}
	if plus {
		return groups, nil
	}
	return chunk(groups[0], perAgent, fail)
}

func parseToken(tok string, pos int, fail func(string, ...any) error) ([]device, error) {
	atoi := func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n > maxIndex {
			return 0, fail("GPU index %q at position %d is out of range; indices run from 0 to %d", v, pos, maxIndex)
		}
		return n, nil
	}
	switch {
	case tok == "":
		return nil, fail("empty GPU id at position %d; use e.g. --gpus 0,1", pos)
	case strings.EqualFold(tok, "all"):
		return nil, fail("\"all\" at position %d cannot be combined with other ids; use --gpus all alone", pos)
	case reIndex.MatchString(tok):
		n, err := atoi(tok)
		if err != nil {
			return nil, err
		}
		return []device{{text: strconv.Itoa(n), index: n, mig: -1, pos: pos}}, nil
	case reRange.MatchString(tok):
		m := reRange.FindStringSubmatch(tok)
		lo, err := atoi(m[1])
		if err != nil {
			return nil, err
		}
		hi, err := atoi(m[2])
		if err != nil {
			return nil, err
		}
		if hi < lo {
			return nil, fail("range %q at position %d runs backwards; write %d-%d", tok, pos, hi, lo)
		}
		var out []device
		for i := lo; i <= hi; i++ {
			out = append(out, device{text: strconv.Itoa(i), index: i, mig: -1, pos: pos})
		}
		return out, nil
	case reMIG.MatchString(tok):
		m := reMIG.FindStringSubmatch(tok)
		g, err := atoi(m[1])
		if err != nil {
			return nil, err
		}
		slot, err := atoi(m[2])
		if err != nil {
			return nil, err
		}
		return []device{{text: fmt.Sprintf("%d:%d", g, slot), index: g, mig: slot, pos: pos}}, nil
	case reUUID.MatchString(tok):
		d := device{text: tok, index: -1, mig: -1, uuid: tok, pos: pos}
		if strings.HasPrefix(tok, "MIG-") {
			d.mig = -2 // a MIG slice whose parent and slot are not known yet
		}
		return []device{d}, nil
	case strings.HasPrefix(tok, "-"):
		return nil, fail("invalid GPU id %q at position %d: GPU indices start at 0", tok, pos)
	}
	return nil, fail("invalid GPU id %q at position %d; use an index (0), a range (0-3), GPU:MIG (0:1), a GPU-/MIG- UUID, or all", tok, pos)
}

// chunk splits one flat list into agents of perAgent devices (1 when 0).
func chunk(flat []device, perAgent int, fail func(string, ...any) error) ([][]device, error) {
	n := max(perAgent, 1)
	if len(flat)%n != 0 {
		return nil, fail("%d GPUs cannot be split into agents of %d; list a multiple of %d GPUs or group them with '+', e.g. 0,1+2", len(flat), n, n)
	}
	var groups [][]device
	for i := 0; i < len(flat); i += n {
		groups = append(groups, flat[i:i+n])
	}
	return groups, nil
}

// resolve checks every id against the inventory (a UUID must exist, an
// index must exist, a MIG slot must exist on its GPU) and fills in indices.
func resolve(groups [][]device, inv *Inventory, fail func(string, ...any) error) error {
	for a := range groups {
		for k := range groups[a] {
			d := &groups[a][k]
			if d.uuid != "" {
				g, mig := inv.byUUID(d.uuid)
				if g == nil {
					return fail("GPU %s at position %d not found; this machine has %s (see `agent-provision gpus`)", d.text, d.pos, inv.indexRange())
				}
				d.index, d.mig = g.Index, mig
				continue
			}
			g := inv.byIndex(d.index)
			if g == nil {
				return fail("GPU %d not found; this machine has %s", d.index, inv.indexRange())
			}
			if d.mig < 0 {
				d.uuid = g.UUID
				continue
			}
			if !g.MIG {
				return fail("GPU %d has MIG disabled, so %s at position %d does not exist; use --gpus %d", g.Index, d.text, d.pos, g.Index)
			}
			for _, m := range g.MIGDevices {
				if m.Index == d.mig {
					d.uuid = m.UUID
				}
			}
			if d.uuid == "" {
				return fail("MIG device %s not found; GPU %d has %s", d.text, g.Index, migRange(g))
			}
		}
	}
	return nil
}

func migRange(g *GPU) string {
	if len(g.MIGDevices) == 0 {
		return "no MIG devices (create them with nvidia-smi mig)"
	}
	ids := make([]string, len(g.MIGDevices))
	for i, m := range g.MIGDevices {
		ids[i] = fmt.Sprintf("%d:%d", g.Index, m.Index)
	}
	return "MIG devices " + strings.Join(ids, ",")
}

// checkOverlap rejects a GPU given twice, or a whole GPU next to one of its
// own MIG slices.
func checkOverlap(groups [][]device, fail func(string, ...any) error) error {
	type owner struct {
		agent int
		d     device
	}
	whole := map[string]owner{} // GPU key -> first agent using the whole GPU
	exact := map[string]owner{} // device key -> first agent
	migOf := map[string]owner{} // GPU key -> first agent using one of its MIG slices
	conflict := func(prev owner, a int, d device) error {
		name := d.text
		if prev.d.text != d.text {
			name = fmt.Sprintf("%s (%s)", d.text, prev.d.text)
		}
		if prev.agent == a {
			return fail("GPU %s is listed twice in agent %d", name, a+1)
		}
		return fail("GPU %s is assigned to agents %d and %d", name, prev.agent+1, a+1)
	}
	for a, g := range groups {
		for _, d := range g {
			gpuKey := ""
			if d.index >= 0 {
				gpuKey = strconv.Itoa(d.index)
			}
			key := d.uuid
			if key == "" {
				key = d.text
			}
			if prev, ok := exact[key]; ok {
				return conflict(prev, a, d)
			}
			exact[key] = owner{a, d}
			if gpuKey == "" {
				continue
			}
			if d.mig < 0 {
				if prev, ok := migOf[gpuKey]; ok {
					return conflict(prev, a, d)
				}
				whole[gpuKey] = owner{a, d}
			} else {
				if prev, ok := whole[gpuKey]; ok {
					return conflict(prev, a, d)
				}
				if _, ok := migOf[gpuKey]; !ok {
					migOf[gpuKey] = owner{a, d}
				}
			}
		}
	}
	return nil
}

func assignment(g []device) Assignment {
	var a Assignment
	names := make([]string, len(g))
	byIndex := true
	for i, d := range g {
		a.Devices = append(a.Devices, d.text)
		if reUUID.MatchString(d.text) {
			byIndex = false
			names[i] = shortUUID(d.text)
		} else {
			names[i] = strings.ReplaceAll(d.text, ":", ".")
		}
	}
	if byIndex {
		a.Instance = "gpu" + strings.Join(names, "-")
	} else {
		a.Instance = "gpu-" + strings.Join(names, "-")
	}
	a.WorkerSuffix = "gpu" + strings.Join(a.Devices, ",")
	return a
}

// shortUUID keeps the prefix and the first 8 characters of a UUID, dropping
// anything systemd does not allow in an instance name: "GPU-1a2b3c4d".
func shortUUID(u string) string {
	prefix, rest, _ := strings.Cut(u, "-")
	rest = strings.TrimPrefix(rest, "GPU-") // old-style MIG-GPU-<uuid>/gi/ci
	var b strings.Builder
	for _, r := range rest {
		if b.Len() == 8 {
			break
		}
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return prefix + "-" + b.String()
}

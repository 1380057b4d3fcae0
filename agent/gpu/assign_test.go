package gpu

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fourGPUs is a 4-GPU host whose GPU 3 has MIG enabled with slots 0 and 1.
func fourGPUs() *Inventory {
	return &Inventory{Driver: "550.54.15", CUDA: "12.4", GPUs: []GPU{
		{Index: 0, UUID: "GPU-1a2b3c4d-0000-0000-0000-000000000000", Name: "A100", MemoryMiB: 40960},
		{Index: 1, UUID: "GPU-5e6f7a8b-0000-0000-0000-000000000001", Name: "A100", MemoryMiB: 40960},
		{Index: 2, UUID: "GPU-9c0d1e2f-0000-0000-0000-000000000002", Name: "A100", MemoryMiB: 40960},
		{Index: 3, UUID: "GPU-aaaabbbb-0000-0000-0000-000000000003", Name: "A100", MemoryMiB: 40960, MIG: true,
			MIGDevices: []MIG{{0, "MIG-11112222-0000-0000-0000-000000000000"}, {1, "MIG-33334444-0000-0000-0000-000000000000"}}},
	}}
}

func TestParseAssignment(t *testing.T) {
	t.Parallel()
	type agent struct{ Devices, Instance, Worker string }
	flat := func(as []Assignment) []agent {
		var out []agent
		for _, a := range as {
			out = append(out, agent{strings.Join(a.Devices, ","), a.Instance, a.WorkerSuffix})
		}
		return out
	}
	tests := []struct {
		spec     string
		perAgent int
		inv      *Inventory
		want     []agent
	}{
		{"0,1", 0, nil, []agent{{"0", "gpu0", "gpu0"}, {"1", "gpu1", "gpu1"}}},
		{" 0 , 1 ", 1, fourGPUs(), []agent{{"0", "gpu0", "gpu0"}, {"1", "gpu1", "gpu1"}}},
		{"0,1+2,3", 0, nil, []agent{{"0,1", "gpu0-1", "gpu0,1"}, {"2,3", "gpu2-3", "gpu2,3"}}},
		{"0+1", 1, nil, []agent{{"0", "gpu0", "gpu0"}, {"1", "gpu1", "gpu1"}}},
		{"0,1,2,3", 2, nil, []agent{{"0,1", "gpu0-1", "gpu0,1"}, {"2,3", "gpu2-3", "gpu2,3"}}},
		{"0-3", 0, nil, []agent{{"0", "gpu0", "gpu0"}, {"1", "gpu1", "gpu1"}, {"2", "gpu2", "gpu2"}, {"3", "gpu3", "gpu3"}}},
		{"0-3", 4, nil, []agent{{"0,1,2,3", "gpu0-1-2-3", "gpu0,1,2,3"}}},
		{"0-1+2", 0, nil, []agent{{"0,1", "gpu0-1", "gpu0,1"}, {"2", "gpu2", "gpu2"}}},
		{"all", 0, fourGPUs(), []agent{{"0", "gpu0", "gpu0"}, {"1", "gpu1", "gpu1"}, {"2", "gpu2", "gpu2"}, {"3", "gpu3", "gpu3"}}},
		{"ALL", 2, fourGPUs(), []agent{{"0,1", "gpu0-1", "gpu0,1"}, {"2,3", "gpu2-3", "gpu2,3"}}},
		{"3:0,3:1", 0, fourGPUs(), []agent{{"3:0", "gpu3.0", "gpu3:0"}, {"3:1", "gpu3.1", "gpu3:1"}}},
		{"GPU-1a2b3c4d-0000-0000-0000-000000000000", 0, fourGPUs(),
			[]agent{{"GPU-1a2b3c4d-0000-0000-0000-000000000000", "gpu-GPU-1a2b3c4d", "gpuGPU-1a2b3c4d-0000-0000-0000-000000000000"}}},
		{"MIG-33334444-0000-0000-0000-000000000000", 0, nil,
			[]agent{{"MIG-33334444-0000-0000-0000-000000000000", "gpu-MIG-33334444", "gpuMIG-33334444-0000-0000-0000-000000000000"}}},
		{"MIG-GPU-aaaabbbb-0000-0000-0000-000000000003/1/0", 0, nil,
			[]agent{{"MIG-GPU-aaaabbbb-0000-0000-0000-000000000003/1/0", "gpu-MIG-aaaabbbb", "gpuMIG-GPU-aaaabbbb-0000-0000-0000-000000000003/1/0"}}},
	}
	for _, tt := range tests {
		got, _, err := ParseAssignment(tt.spec, tt.perAgent, tt.inv)
		if err != nil {
			t.Errorf("ParseAssignment(%q, %d): %v", tt.spec, tt.perAgent, err)
			continue
		}
		if diff := cmp.Diff(tt.want, flat(got)); diff != "" {
			t.Errorf("ParseAssignment(%q, %d) (-want +got):\n%s", tt.spec, tt.perAgent, diff)
		}
	}
}

func TestParseAssignmentWithInventory(t *testing.T) {
	t.Parallel()
	inv := fourGPUs()
	got, warnings, err := ParseAssignment("1,3:1", 2, inv)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none with an inventory", warnings)
	}
	want := []Assignment{{
		Devices:      []string{"1", "3:1"},
		Instance:     "gpu1-3.1",
		WorkerSuffix: "gpu1,3:1",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseAssignmentWarnsWithoutInventory(t *testing.T) {
	t.Parallel()
	got, warnings, err := ParseAssignment("0,7", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Devices[0] != "7" {
		t.Errorf("got %+v, want 2 agents, the second on GPU 7", got)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "not checked") {
		t.Errorf("warnings = %q, want one saying the ids were not checked", warnings)
	}
}

func TestParseAssignmentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec     string
		perAgent int
		inv      *Inventory
		want     string
	}{
		{"0,,1", 0, nil, `--gpus "0,,1": empty GPU id at position 2; use e.g. --gpus 0,1`},
		{"0,1+", 0, nil, `--gpus "0,1+": empty GPU id at position 3; use e.g. --gpus 0,1`},
		{"", 0, nil, `--gpus "": no GPU ids; use e.g. --gpus 0,1 or --gpus all`},
		{"-1", 0, nil, `--gpus "-1": invalid GPU id "-1" at position 1: GPU indices start at 0`},
		{"a", 0, nil, `--gpus "a": invalid GPU id "a" at position 1; use an index (0), a range (0-3), GPU:MIG (0:1), a GPU-/MIG- UUID, or all`},
		{"0,3-1", 0, nil, `--gpus "0,3-1": range "3-1" at position 2 runs backwards; write 1-3`},
		{"0-100000", 0, nil, `--gpus "0-100000": GPU index "100000" at position 1 is out of range; indices run from 0 to 1023`},
		{"0,all", 0, fourGPUs(), `--gpus "0,all": "all" at position 2 cannot be combined with other ids; use --gpus all alone`},
		{"all", 0, nil, `--gpus all: NVML not found (libnvidia-ml.so); list GPU indices explicitly, e.g. --gpus 0,1`},
		{"all", 0, &Inventory{}, `--gpus all: NVML reports no GPUs on this machine; use --cpu-only`},
		{"0,1+1,2", 0, nil, `--gpus "0,1+1,2": GPU 1 is assigned to agents 1 and 2`},
		{"0-2,1", 4, nil, `--gpus "0-2,1": GPU 1 is listed twice in agent 1`},
		{"0,GPU-5e6f7a8b-0000-0000-0000-000000000001,1", 0, fourGPUs(),
			`--gpus "0,GPU-5e6f7a8b-0000-0000-0000-000000000001,1": GPU 1 (GPU-5e6f7a8b-0000-0000-0000-000000000001) is assigned to agents 2 and 3`},
		{"3,3:1", 0, nil, `--gpus "3,3:1": GPU 3:1 (3) is assigned to agents 1 and 2`},
		{"3:0+3", 0, nil, `--gpus "3:0+3": GPU 3 (3:0) is assigned to agents 1 and 2`},
		{"7", 0, fourGPUs(), `--gpus "7": GPU 7 not found; this machine has GPUs 0-3`},
		{"0:1", 0, fourGPUs(), `--gpus "0:1": GPU 0 has MIG disabled, so 0:1 at position 1 does not exist; use --gpus 0`},
		{"3:5", 0, fourGPUs(), `--gpus "3:5": MIG device 3:5 not found; GPU 3 has MIG devices 3:0,3:1`},
		{"GPU-ffffffff", 0, fourGPUs(), `--gpus "GPU-ffffffff": GPU GPU-ffffffff at position 1 not found; this machine has GPUs 0-3 (see ` + "`agent-provision gpus`)"},
		{"0,1,2", 2, nil, `--gpus "0,1,2": 3 GPUs cannot be split into agents of 2; list a multiple of 2 GPUs or group them with '+', e.g. 0,1+2`},
		{"0+1", 2, nil, `--gpus "0+1": groups joined by '+' and --gpus-per-agent 2 both say how to split; use one of them`},
		{"0", -1, nil, `--gpus "0": --gpus-per-agent -1 is negative; use 1 or more`},
		{"GPU-1a2b3c4d-1,GPU-1a2b3c4d-2", 0, nil, `--gpus "GPU-1a2b3c4d-1,GPU-1a2b3c4d-2": agents 1 and 2 would both be named "gpu-GPU-1a2b3c4d"; use GPU indices instead of UUIDs`},
	}
	for _, tt := range tests {
		got, _, err := ParseAssignment(tt.spec, tt.perAgent, tt.inv)
		if err == nil {
			t.Errorf("ParseAssignment(%q, %d) = %+v, want error %q", tt.spec, tt.perAgent, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseAssignment(%q, %d) error:\n got %s\nwant %s", tt.spec, tt.perAgent, err, tt.want)
		}
	}
}

func TestInventoryIndexRange(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		idx  []int
		want string
	}{{nil, "no GPUs"}, {[]int{0}, "GPU 0"}, {[]int{0, 1, 2}, "GPUs 0-2"}, {[]int{0, 2}, "GPUs 0,2"}} {
		inv := &Inventory{}
		for _, i := range tt.idx {
			inv.GPUs = append(inv.GPUs, GPU{Index: i})
		}
		if got := inv.indexRange(); got != tt.want {
			t.Errorf("indexRange(%v) = %q, want %q", tt.idx, got, tt.want)
		}
	}
}

package docker

import (
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/google/go-cmp/cmp"
)

func TestGPUDevices(t *testing.T) {
	t.Parallel()
	gpu := [][]string{{"gpu"}}
	tests := []struct {
		gpus    string
		cpuOnly bool
		skip    bool
		want    []container.DeviceRequest
		visible string
		wantErr string
	}{
		{gpus: "", want: []container.DeviceRequest{{Count: -1, Capabilities: gpu}}, visible: "all"},
		{gpus: "all", want: []container.DeviceRequest{{Count: -1, Capabilities: gpu}}, visible: "all"},
		{gpus: "ALL", skip: true, visible: "all"},
		{gpus: "0,1", want: []container.DeviceRequest{{DeviceIDs: []string{"0", "1"}, Capabilities: gpu}}, visible: "0,1"},
		{gpus: " 3 ", want: []container.DeviceRequest{{DeviceIDs: []string{"3"}, Capabilities: gpu}}, visible: "3"},
		{gpus: "0-2,5,1", want: []container.DeviceRequest{{DeviceIDs: []string{"0", "1", "2", "5"}, Capabilities: gpu}}, visible: "0,1,2,5"},
		{gpus: "0.1,0:2", want: []container.DeviceRequest{{DeviceIDs: []string{"0:1", "0:2"}, Capabilities: gpu}}, visible: "0:1,0:2"},
		{gpus: "GPU-8f6c2b1e-1a2b-3c4d-5e6f-0123456789ab,MIG-5a0c3e2f-aaaa-bbbb-cccc-0123456789ab",
			want:    []container.DeviceRequest{{DeviceIDs: []string{"GPU-8f6c2b1e-1a2b-3c4d-5e6f-0123456789ab", "MIG-5a0c3e2f-aaaa-bbbb-cccc-0123456789ab"}, Capabilities: gpu}},
			visible: "GPU-8f6c2b1e-1a2b-3c4d-5e6f-0123456789ab,MIG-5a0c3e2f-aaaa-bbbb-cccc-0123456789ab"},
		{gpus: "MIG-GPU-8f6c2b1e/1/0", want: []container.DeviceRequest{{DeviceIDs: []string{"MIG-GPU-8f6c2b1e/1/0"}, Capabilities: gpu}}, visible: "MIG-GPU-8f6c2b1e/1/0"},
		{gpus: "0,1", skip: true, visible: "0,1"},
		{gpus: "0,1", cpuOnly: true, visible: "none"},
		{gpus: "none", visible: "none"},
		{gpus: "0,,1", wantErr: `--gpus "0,,1": empty GPU id at position 2; separate ids with single commas, e.g. --gpus 0,1`},
		{gpus: "0,gpu1", wantErr: `--gpus "0,gpu1": "gpu1" at position 2 is not a GPU index (0), range (0-3), MIG slot (0:1) or UUID (GPU-..., MIG-...); list the devices nvidia-smi -L shows`},
		{gpus: "3-1", wantErr: `--gpus "3-1": range 3-1 at position 1 is not low-high within 0-1023; write e.g. 0-3`},
		{gpus: "5000", wantErr: `--gpus "5000": GPU index 5000 at position 1 is too large; use the indices nvidia-smi lists`},
	}
	for _, tt := range tests {
		got, visible, err := gpuDevices(tt.gpus, tt.cpuOnly, tt.skip)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("gpuDevices(%q) error = %v, want %s", tt.gpus, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("gpuDevices(%q): %v", tt.gpus, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" || visible != tt.visible {
			t.Errorf("gpuDevices(%q, cpu=%v, skip=%v) = %q (-want +got):\n%s", tt.gpus, tt.cpuOnly, tt.skip, visible, diff)
		}
	}
}

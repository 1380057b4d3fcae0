package docker

import (
	"regexp"
	"testing"
)

func TestContainerName(t *testing.T) {
	t.Parallel()
	fields := map[string]string{"task_id": "abc123", "worker_id": "host-gpu0", "task_name": "train-v2", "rand_string": "qwertyuiopasdfghjklzxcvbnmqwerty"}
	tests := []struct {
		format, want, wantErr string
	}{
		{format: "clearml-id-{task_id}-{rand_string:.8}", want: "clearml-id-abc123-qwertyui"},
		{format: "{worker_id}.{task_name}", want: "host-gpu0.train-v2"},
		{format: "{task_id:.3}{rand_string:.0}_x", want: "abc_x"},
		{format: "x{{}}", wantErr: `agent.docker_container_name_format "x{{}}" gives "x{}", which is not a container name (letters, digits, _ . - and at least 2 characters, starting with a letter or digit); change the format`},
		{format: "{task}", wantErr: `agent.docker_container_name_format "{task}": unknown field {task}; use task_id, worker_id, task_name or rand_string`},
		{format: "{task_id:>20}", wantErr: `agent.docker_container_name_format "{task_id:>20}": format ">20" of {task_id} is not supported; use a length such as {task_id:.8}`},
		{format: "id-{task_id", wantErr: `agent.docker_container_name_format "id-{task_id": '{' at 3 is not closed`},
		{format: "id-}", wantErr: `agent.docker_container_name_format "id-}": single '}' at 3; write }} for a literal brace`},
		{format: "-{task_id}", wantErr: `gives "-abc123", which is not a container name`},
	}
	for _, tt := range tests {
		got, err := containerName(tt.format, fields)
		switch {
		case tt.wantErr != "" && (err == nil || !regexp.MustCompile(regexp.QuoteMeta(tt.wantErr)).MatchString(err.Error())):
			t.Errorf("containerName(%q) error = %v, want %s", tt.format, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("containerName(%q) = %q, %v; want %q", tt.format, got, err, tt.want)
		}
	}
}

func TestNameFields(t *testing.T) {
	t.Parallel()
	f := nameFields("t/1", "host:gpu0,1", "my task (v2)")
	if f["task_id"] != "t-1" || f["worker_id"] != "host-gpu0-1" || f["task_name"] != "my-task--v2-" {
		t.Errorf("nameFields = %q", f)
	}
	if !regexp.MustCompile(`^[a-z]{32}$`).MatchString(f["rand_string"]) {
		t.Errorf("rand_string = %q, want 32 lowercase letters", f["rand_string"])
	}
}

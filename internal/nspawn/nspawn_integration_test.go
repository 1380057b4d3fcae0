//go:build integration

package nspawn

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIntegrationBoot(t *testing.T) {
	m := Boot(t, Options{Ephemeral: true})
	t.Logf("boot took %s (pid1 %d, root %s)", m.BootTime(), m.PID1(), m.Root())

	out, err := m.Exec(t.Context(), "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(out) != "systemd" {
		t.Fatalf("PID 1 inside = %q, %v; want systemd", out, err)
	}
	// Files written through Root are visible inside.
	if err := os.WriteFile(filepath.Join(m.Root(), "tmp-marker"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Exec(t.Context(), "cat", "/tmp-marker"); err != nil || out != "hi" {
		t.Errorf("cat /tmp-marker = %q, %v", out, err)
	}
	// Host networking is shared: a host server on 127.0.0.1 is reachable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("from-host")) })}
	go srv.Serve(ln)
	defer srv.Close()
	py := "import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
	if out, err := m.Exec(t.Context(), "python3", "-c", py, "http://"+ln.Addr().String()+"/"); err != nil || strings.TrimSpace(out) != "from-host" {
		t.Errorf("fetch host server from inside = %q, %v", out, err)
	}
	if j := m.Journal("systemd-journald.service"); j == "" {
		t.Errorf("Journal(systemd-journald.service) is empty")
	}
	if _, err := m.Exec(t.Context(), "false"); err == nil || !strings.Contains(err.Error(), "false") {
		t.Errorf("Exec(false) error = %v, want one naming the command", err)
	}
}

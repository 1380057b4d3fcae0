// Package sdnotifytest gives tests a real NOTIFY_SOCKET: a unixgram listener
// that records the datagrams sd_notify sends.
package sdnotifytest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Listen creates a unixgram socket, points NOTIFY_SOCKET at it with t.Setenv
// (so the calling test must not be parallel) and returns its path and a recv
// function returning the next datagram. recv fails the test after 10 s
// without one. Everything is removed when the test ends.
func Listen(t testing.TB) (socketPath string, recv func() string) {
	t.Helper()
	// A short directory: socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatalf("sdnotifytest: temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socketPath = filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socketPath, Net: "unixgram"})
	if err != nil {
		t.Fatalf("sdnotifytest: listen on %s: %v", socketPath, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", socketPath)
	recv = func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatalf("sdnotifytest: %v", err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("sdnotifytest: no datagram on %s: %v", socketPath, err)
		}
		return string(buf[:n])
	}
	return socketPath, recv
}

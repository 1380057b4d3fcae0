package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// run checks the flags, serves the emulator on listen until SIGINT/SIGTERM
// and prints the clearml.conf api section that reaches it.
func run(listen, access, secret, snapshot string, queues []string, allowRemote, verbose bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w; use e.g. --listen 127.0.0.1:8008", listen, err)
	}
	if ip := net.ParseIP(host); !allowRemote && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q is not a loopback address; use 127.0.0.1 or add --allow-remote", listen)
	}
	if (access == "") != (secret == "") {
		return errors.New("--access-key and --secret-key must be given together (or neither, for a random pair)")
	}
	if access == "" {
		access, secret = randomKey(10), randomKey(24)
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	srv := emulator.New(emulator.Options{
		Credentials:  map[string]string{access: secret},
		SnapshotPath: snapshot,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	defer srv.Close()
	for _, q := range queues {
		srv.CreateQueue(q)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	url := "http://" + ln.Addr().String()
	fmt.Printf("listening on %s\n", url)
	fmt.Printf("api {\n    api_server: %q\n    web_server: %q\n    files_server: %q\n    credentials {\n        \"access_key\": %q\n        \"secret_key\": %q\n    }\n}\n",
		url, url, url, access, secret)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		return err
	}
	return srv.Close()
}

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

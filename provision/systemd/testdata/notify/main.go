// Command notify is a tiny Type=notify service for the integration test:
// it sends READY=1 and STATUS=hello, then sleeps until stopped. With
// --no-ready it never signals readiness, so its start times out.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) > 1 && os.Args[1] == "--no-ready" {
		fmt.Fprintln(os.Stderr, "stuck: never sending READY=1")
		<-stop
		return
	}
	sent, err := daemon.SdNotify(false, "READY=1\nSTATUS=hello")
	if err != nil || !sent {
		fmt.Fprintf(os.Stderr, "notify: READY not delivered (sent=%v, err=%v); run under systemd with Type=notify\n", sent, err)
		os.Exit(1)
	}
	fmt.Println("demo ready")
	<-stop
	fmt.Println("demo stopping")
}

package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Flag is the daemon's option naming the metrics address, used in errors.
const Flag = "--metrics-listen"

// ValidateAddr checks a metrics address: host:port with a numeric port
// (host may be empty for every interface; port 0 picks a free one).
func ValidateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		a := strings.TrimSpace(addr)
		if p, perr := strconv.Atoi(a); perr == nil && p > 0 && p <= 65535 {
			return fmt.Errorf("%s %q: a port alone is not an address; use 127.0.0.1:%d (or :%d for every interface)", Flag, addr, p, p)
		}
		return fmt.Errorf("%s %q: not host:port; use e.g. 127.0.0.1:9101", Flag, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s %q: port %q is not a number from 0 to 65535; use e.g. %s", Flag, addr, port, net.JoinHostPort(orLocal(host), "9101"))
	}
	if strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("%s %q: host %q is not a host name or IP address; use e.g. 127.0.0.1:%s", Flag, addr, host, port)
	}
	return nil
}

func orLocal(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}

// Serve serves m at addr: /metrics and /healthz. See Start.
func Serve(ctx context.Context, addr string, m *Metrics, require bool, logf func(format string, args ...any)) (stop func(), err error) {
	_, stop, err = Start(ctx, addr, m, require, logf)
	return stop, err
}

// Start serves m at addr (/metrics, /healthz) until stop is called or ctx
// ends, and returns the address it listens on (useful with port 0).
//
//   - addr "": metrics are off; a no-op stop, no error.
//   - addr not host:port: a one-line error, whatever require says.
//   - addr taken (or not of this machine): with require, a one-line error
//     naming the address and the fix; without, one line through logf, a
//     no-op stop and no error, so the agent starts without metrics.
//
// stop shuts the server down (waiting up to 5 s for scrapes in flight) and
// may be called more than once.
func Start(ctx context.Context, addr string, m *Metrics, require bool, logf func(format string, args ...any)) (bound string, stop func(), err error) {
	noop := func() {}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if addr == "" {
		return "", noop, nil
	}
	if err := ValidateAddr(addr); err != nil {
		return "", nil, err
	}
	if m == nil {
		return "", nil, errors.New("metrics: Start needs the agent's *Metrics (got nil); create it with metrics.New")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		why := fmt.Sprintf("cannot listen (%v); use an address of this machine", err)
		if errors.Is(err, syscall.EADDRINUSE) {
			why = "address already in use; pick a free port or stop the other process that listens there"
		}
		if require {
			return "", nil, fmt.Errorf("%s %s: %s", Flag, addr, why)
		}
		logf("metrics: %s %s: %s; the agent runs without a metrics endpoint", Flag, addr, why)
		return "", noop, nil
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "clearml-agent metrics: /metrics, /healthz")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("metrics: serving %s stopped: %v", ln.Addr(), err)
		}
	}()

	var once sync.Once
	stopped := make(chan struct{})
	stop = func() {
		once.Do(func() {
			close(stopped)
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				srv.Close()
			}
			<-done
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-stopped:
		}
	}()
	return ln.Addr().String(), stop, nil
}

package preempt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Providers (values of agent.preemption.provider).
const (
	ProviderOff   = "off"
	ProviderAuto  = "auto"
	ProviderGCE   = "gce"
	ProviderAWS   = "aws"
	ProviderAzure = "azure"
)

// The daemon's setting keys, named in every error about them.
const (
	KeyProvider     = "agent.preemption.provider"
	KeyEndpoint     = "agent.preemption.endpoint"
	KeyPollInterval = "agent.preemption.poll_interval_sec"
)

// Defaults.
const (
	DefaultInterval    = 5 * time.Second
	DefaultHTTPTimeout = 2 * time.Second
)

const maxBody = 64 << 10 // longest answer read from a metadata endpoint

// Options configures Watch. Zero values take the defaults noted.
type Options struct {
	Provider    string        // off (default), auto, gce, aws or azure
	Endpoint    string        // base URL replacing the provider's metadata host, e.g. http://127.0.0.1:8080
	Interval    time.Duration // between polls; default 5 s
	HTTPTimeout time.Duration // one HTTP attempt; default 2 s
	Client      *http.Client  // default: a client that never uses a proxy
	VMName      string        // azure: this VM's name (default: asked from the metadata service)
	Logf        func(format string, args ...any)
}

// Notice is a termination notice.
type Notice struct {
	Provider string    // gce, aws or azure
	Reason   string    // one line for the task log, e.g. "instance preempted (gce)"
	At       time.Time // when the cloud takes the VM, when it says; else zero
}

// ParseProvider checks a value of agent.preemption.provider; "" is off.
func ParseProvider(s string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "":
		return ProviderOff, nil
	case ProviderOff, ProviderAuto, ProviderGCE, ProviderAWS, ProviderAzure:
		return v, nil
	}
	return "", fmt.Errorf("%s: %q is not a provider; use one of off, auto, gce, aws, azure", KeyProvider, s)
}

// ParseEndpoint checks a value of agent.preemption.endpoint: "" (the
// provider's own metadata host) or an http(s) base URL.
func ParseEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s: %q is not a base URL; use e.g. http://169.254.169.254 (scheme, host, optional port and path)", KeyEndpoint, s)
	}
	return strings.TrimRight(s, "/"), nil
}

// ParsePollInterval checks a value of agent.preemption.poll_interval_sec
// (seconds, fractions allowed); "" is the default.
func ParsePollInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultInterval, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0.1 || f > 3600 {
		return 0, fmt.Errorf("%s: %q is not a number of seconds from 0.1 to 3600; use e.g. 5", KeyPollInterval, s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// Watch starts watching for a termination notice and returns at once. The
// channel receives at most one Notice and is closed when the watch ends:
// right after the notice, or when ctx ends. With provider off (or auto on a
// machine where no cloud answers) nothing is polled and the channel is
// closed only when ctx ends, so a select on it simply never fires before.
// Errors are bad options, each one line naming the setting.
func Watch(ctx context.Context, o Options) (<-chan Notice, error) {
	w, err := newWatcher(o)
	if err != nil {
		return nil, err
	}
	ch := make(chan Notice, 1)
	go w.run(ctx, ch)
	return ch, nil
}

type watcher struct {
	provider string
	endpoint string
	interval time.Duration
	timeout  time.Duration
	client   *http.Client
	vmName   string
	logf     func(format string, args ...any)
	now      func() time.Time

	failKind string // kind of the last failure logged; "" while polls succeed
}

func newWatcher(o Options) (*watcher, error) {
	p, err := ParseProvider(o.Provider)
	if err != nil {
		return nil, err
	}
	ep, err := ParseEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	if o.Interval < 0 {
		return nil, fmt.Errorf("%s: %s is negative; use a positive interval, e.g. 5", KeyPollInterval, o.Interval)
	}
	w := &watcher{
		provider: p,
		endpoint: ep,
		interval: o.Interval,
		timeout:  o.HTTPTimeout,
		client:   o.Client,
		vmName:   strings.TrimSpace(o.VMName),
		logf:     o.Logf,
		now:      time.Now,
	}
	if w.interval == 0 {
		w.interval = DefaultInterval
	}
	if w.timeout <= 0 {
		w.timeout = DefaultHTTPTimeout
	}
	if w.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil // link-local metadata must never go through a proxy
		w.client = &http.Client{Transport: t}
	}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	return w, nil
}

// poller asks one provider once.
type poller interface {
	name() string
	target() string // the URL polled, for messages
	poll(ctx context.Context) (*Notice, error)
}

func (w *watcher) base(provider string) string {
	if w.endpoint != "" {
		return w.endpoint
	}
	if provider == ProviderGCE {
		return "http://metadata.google.internal"
	}
	return "http://169.254.169.254"
}

func (w *watcher) newPoller(provider string) poller {
	switch provider {
	case ProviderGCE:
		return &gcePoller{w: w, url: w.base(provider) + gcePath}
	case ProviderAWS:
		return &awsPoller{w: w, base: w.base(provider), ttl: awsTokenTTL}
	case ProviderAzure:
		return &azurePoller{w: w, base: w.base(provider), vmName: w.vmName}
	}
	return nil
}

func (w *watcher) run(ctx context.Context, ch chan<- Notice) {
	defer close(ch)
	var p poller
	switch w.provider {
	case ProviderOff:
	case ProviderAuto:
		p = w.detect(ctx)
	default:
		p = w.newPoller(w.provider)
	}
	if p == nil {
		<-ctx.Done()
		return
	}
	w.logf("preemption: watching %s termination notices at %s every %s", p.name(), p.target(), w.interval)
	for {
		n, err := p.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.failed(p, err)
		} else {
			w.answered(p)
		}
		if n != nil {
			w.logf("preemption: %s", n.Reason)
			ch <- *n
			return
		}
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// failed logs a failed poll, once per kind of failure.
func (w *watcher) failed(p poller, err error) {
	k := failureKind(err)
	if k == w.failKind {
		return
	}
	w.failKind = k
	w.logf("preemption: %s metadata %s: %v; ignored, polling every %s goes on (logged again only when this changes)",
		p.name(), p.target(), err, w.interval)
}

func (w *watcher) answered(p poller) {
	if w.failKind == "" {
		return
	}
	w.failKind = ""
	w.logf("preemption: %s metadata %s answers again", p.name(), p.target())
}

// answerError is an answer that is not what the provider sends: a bad
// status or garbage.
type answerError struct {
	kind string // "HTTP 500", "garbage", ...
	msg  string
}

func (e *answerError) Error() string { return e.msg }

func garbage(format string, args ...any) error {
	return &answerError{kind: "garbage", msg: fmt.Sprintf(format, args...)}
}

func badStatus(code int, body []byte) error {
	return &answerError{kind: "HTTP " + strconv.Itoa(code), msg: fmt.Sprintf("unexpected HTTP status %d (%s)", code, snippet(body))}
}

// timeoutError is an HTTP attempt that ran out of time.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }

func failureKind(err error) string {
	var ae *answerError
	if errors.As(err, &ae) {
		return ae.kind
	}
	var te timeoutError
	var ne net.Error
	if errors.As(err, &te) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "unreachable"
}

// snippet quotes the start of an answer for a message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return strconv.Quote(s)
}

// do makes one HTTP attempt bounded by the watcher's timeout.
func (w *watcher) do(ctx context.Context, method, u string, hdr map[string]string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, nil, timeoutError(fmt.Sprintf("no answer within %s", w.timeout))
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, nil, nil, timeoutError(fmt.Sprintf("answer not complete within %s", w.timeout))
		}
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

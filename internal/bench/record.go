package bench

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// request is one call that reached the emulator.
type request struct {
	at       time.Time
	endpoint string
}

// recorder wraps the emulator handler: it timestamps every request per
// endpoint and fires probes, which wait for the first request (or response)
// of an endpoint whose body contains a needle.
type recorder struct {
	next http.Handler

	mu     sync.Mutex
	reqs   []request
	probes []*probe
}

// probe fires once, at the first matching call.
type probe struct {
	endpoint string
	needles  [][]byte // all must occur; none matches any call
	response bool     // match the response body instead of the request body
	once     sync.Once
	at       time.Time
	hit      chan struct{}
}

func (p *probe) fire(at time.Time) {
	p.once.Do(func() { p.at = at; close(p.hit) })
}

func (p *probe) matches(body []byte) bool {
	for _, n := range p.needles {
		if !bytes.Contains(body, n) {
			return false
		}
	}
	return true
}

// fired reports whether the probe matched, and when.
func (p *probe) fired() (time.Time, bool) {
	select {
	case <-p.hit:
		return p.at, true
	default:
		return time.Time{}, false
	}
}

func newRecorder(next http.Handler) *recorder { return &recorder{next: next} }

// watch registers a probe that fires at the first call of endpoint whose
// request (or response) body holds every needle; call it before the event
// can happen.
func (r *recorder) watch(endpoint string, response bool, needles ...string) *probe {
	p := &probe{endpoint: endpoint, response: response, hit: make(chan struct{})}
	for _, n := range needles {
		p.needles = append(p.needles, []byte(n))
	}
	r.mu.Lock()
	r.probes = append(r.probes, p)
	r.mu.Unlock()
	return p
}

// unwatch drops probes that are no longer needed.
func (r *recorder) unwatch(ps ...*probe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.probes[:0]
	for _, p := range r.probes {
		drop := false
		for _, q := range ps {
			drop = drop || p == q
		}
		if !drop {
			keep = append(keep, p)
		}
	}
	r.probes = keep
}

// endpointOf maps "/v2.31/workers.register" and "/workers.register" to
// "workers.register".
func endpointOf(path string) string {
	path = strings.TrimRight(path, "/")
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		path = path[i+1:]
	}
	return path
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	ep := endpointOf(req.URL.Path)
	r.mu.Lock()
	r.reqs = append(r.reqs, request{at: at, endpoint: ep})
	onReq := r.probesFor(ep, false)
	r.mu.Unlock()

	if len(onReq) > 0 {
		body, err := io.ReadAll(req.Body)
		if err == nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			now := time.Now()
			for _, p := range onReq {
				if p.matches(body) {
					p.fire(now)
				}
			}
		}
	}
	// Response probes are looked up after the call: one registered while a
	// long poll was in flight must still see that poll's answer.
	cw := &captureWriter{ResponseWriter: w}
	r.next.ServeHTTP(cw, req)
	now := time.Now()
	r.mu.Lock()
	onResp := r.probesFor(ep, true)
	r.mu.Unlock()
	for _, p := range onResp {
		if p.matches(cw.buf.Bytes()) {
			p.fire(now)
		}
	}
}

// probesFor lists the probes of an endpoint; callers hold r.mu.
func (r *recorder) probesFor(ep string, response bool) []*probe {
	var out []*probe
	for _, p := range r.probes {
		if p.endpoint == ep && p.response == response {
			out = append(out, p)
		}
	}
	return out
}

// counts returns the requests per endpoint that arrived in [from, to).
func (r *recorder) counts(from, to time.Time) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, q := range r.reqs {
		if !q.at.Before(from) && q.at.Before(to) {
			out[q.endpoint]++
		}
	}
	return out
}

// captureWriter keeps a copy of the response body.
type captureWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (c *captureWriter) Write(b []byte) (int, error) {
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

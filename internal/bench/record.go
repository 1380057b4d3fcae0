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
	needle   []byte // nil matches any call
	response bool   // match the response body instead of the request body
	once     sync.Once
	at       time.Time
	hit      chan struct{}
}

func (p *probe) fire(at time.Time) {
	p.once.Do(func() { p.at = at; close(p.hit) })
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

// watch registers a probe; call it before the event can happen.
func (r *recorder) watch(endpoint, needle string, response bool) *probe {
	p := &probe{endpoint: endpoint, response: response, hit: make(chan struct{})}
	if needle != "" {
		p.needle = []byte(needle)
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
	var onReq, onResp []*probe
	r.mu.Lock()
	r.reqs = append(r.reqs, request{at: at, endpoint: ep})
	for _, p := range r.probes {
		if p.endpoint != ep {
			continue
		}
		if p.response {
			onResp = append(onResp, p)
		} else {
			onReq = append(onReq, p)
		}
	}
	r.mu.Unlock()

	if len(onReq) > 0 {
		body, err := io.ReadAll(req.Body)
		if err == nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			now := time.Now()
			for _, p := range onReq {
				if p.needle == nil || bytes.Contains(body, p.needle) {
					p.fire(now)
				}
			}
		}
	}
	if len(onResp) == 0 {
		r.next.ServeHTTP(w, req)
		return
	}
	cw := &captureWriter{ResponseWriter: w}
	r.next.ServeHTTP(cw, req)
	now := time.Now()
	for _, p := range onResp {
		if p.needle == nil || bytes.Contains(cw.buf.Bytes(), p.needle) {
			p.fire(now)
		}
	}
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

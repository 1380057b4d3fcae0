package preempt

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Generous bound for "eventually": polls run every few milliseconds in these
// tests, so this only trips when something is really stuck.
const eventually = 20 * time.Second

// logs collects Logf lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// metadata is a local server playing a metadata service: handle gets the
// request and how many requests reached that path before (0 for the first).
type metadata struct {
	*httptest.Server
	mu      sync.Mutex
	counts  map[string]int
	headErr []string // requests that lacked a required header
}

func newMetadata(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *metadata {
	t.Helper()
	m := &metadata{counts: map[string]int{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		m.mu.Lock()
		n := m.counts[key]
		m.counts[key]++
		m.mu.Unlock()
		handle(w, r, n)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *metadata) count(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[key]
}

// requireHeader records a request without header k: v (real metadata
// services refuse those).
func (m *metadata) requireHeader(r *http.Request, k, v string) bool {
	if r.Header.Get(k) == v {
		return true
	}
	m.mu.Lock()
	m.headErr = append(m.headErr, fmt.Sprintf("%s %s: header %s=%q, want %q", r.Method, r.URL, k, r.Header.Get(k), v))
	m.mu.Unlock()
	return false
}

func (m *metadata) checkHeaders(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.headErr {
		t.Error(e)
	}
}

// hang blocks like an endpoint that never answers, until the client gives up.
func hang(r *http.Request) { <-r.Context().Done() }

func start(t *testing.T, o Options) (<-chan Notice, *logs, context.CancelFunc) {
	t.Helper()
	l := &logs{}
	if o.Interval == 0 {
		o.Interval = 5 * time.Millisecond
	}
	if o.HTTPTimeout == 0 {
		o.HTTPTimeout = 5 * time.Second
	}
	o.Logf = l.logf
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := Watch(ctx, o)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return ch, l, cancel
}

func waitNotice(t *testing.T, ch <-chan Notice, l *logs) Notice {
	t.Helper()
	select {
	case n, ok := <-ch:
		if !ok {
			t.Fatalf("channel closed without a notice; log:\n%s", l)
		}
		// At most one notice: the channel is closed right after.
		select {
		case n2, ok := <-ch:
			if ok {
				t.Fatalf("second notice %+v", n2)
			}
		case <-time.After(eventually):
			t.Fatal("channel not closed after the notice")
		}
		return n
	case <-time.After(eventually):
		t.Fatalf("no notice within %s; log:\n%s", eventually, l)
	}
	return Notice{}
}

func waitClosed(t *testing.T, ch <-chan Notice) {
	t.Helper()
	select {
	case n, ok := <-ch:
		if ok {
			t.Fatalf("unexpected notice %+v", n)
		}
	case <-time.After(eventually):
		t.Fatal("channel not closed after the context ended")
	}
}

func TestParseProvider(t *testing.T) {
	for in, want := range map[string]string{"": "off", "off": "off", " GCE ": "gce", "aws": "aws", "Azure": "azure", "auto": "auto"} {
		got, err := ParseProvider(in)
		if err != nil || got != want {
			t.Errorf("ParseProvider(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"gcp", "ec2", "yes", "aws azure"} {
		_, err := ParseProvider(in)
		if err == nil {
			t.Errorf("ParseProvider(%q): no error", in)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, KeyProvider) || !strings.Contains(msg, "off, auto, gce, aws, azure") || !strings.Contains(msg, fmt.Sprintf("%q", in)) {
			t.Errorf("ParseProvider(%q) error %q: want one line naming %s, the value and the valid values", in, msg, KeyProvider)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{"": "", "http://169.254.169.254": "http://169.254.169.254", "http://127.0.0.1:8080/": "http://127.0.0.1:8080", "https://meta.example/prefix/": "https://meta.example/prefix"} {
		got, err := ParseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"169.254.169.254", "ftp://x", "http://", "http://h/?a=b", "://x"} {
		_, err := ParseEndpoint(in)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), KeyEndpoint) {
			t.Errorf("ParseEndpoint(%q) error %v: want one line naming %s", in, err, KeyEndpoint)
		}
	}
}

func TestParsePollInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"": DefaultInterval, "5": 5 * time.Second, "0.5": 500 * time.Millisecond, " 60 ": time.Minute} {
		got, err := ParsePollInterval(in)
		if err != nil || got != want {
			t.Errorf("ParsePollInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "abc", "5s", "99999"} {
		_, err := ParsePollInterval(in)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), KeyPollInterval) {
			t.Errorf("ParsePollInterval(%q) error %v: want one line naming %s", in, err, KeyPollInterval)
		}
	}
}

func TestWatchBadOptions(t *testing.T) {
	for _, o := range []Options{{Provider: "gcp"}, {Provider: "gce", Endpoint: "nohost"}, {Provider: "aws", Interval: -time.Second}} {
		ch, err := Watch(context.Background(), o)
		if err == nil || ch != nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "agent.preemption.") {
			t.Errorf("Watch(%+v) = %v, %v; want a one-line error naming the setting", o, ch, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	w, err := newWatcher(Options{Provider: "gce"})
	if err != nil {
		t.Fatal(err)
	}
	if w.interval != DefaultInterval || w.timeout != DefaultHTTPTimeout {
		t.Errorf("interval %s timeout %s; want %s %s", w.interval, w.timeout, DefaultInterval, DefaultHTTPTimeout)
	}
	if tr, ok := w.client.Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Error("the default client may use a proxy; metadata requests must go direct")
	}
	if got := w.newPoller(ProviderGCE).target(); got != "http://metadata.google.internal"+gcePath {
		t.Errorf("gce target %s", got)
	}
	if got := w.newPoller(ProviderAWS).target(); got != "http://169.254.169.254"+awsActionPath {
		t.Errorf("aws target %s", got)
	}
	if got := w.newPoller(ProviderAzure).target(); got != "http://169.254.169.254"+azureEventsPath {
		t.Errorf("azure target %s", got)
	}
}

func TestOffPollsNothing(t *testing.T) {
	md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) { t.Errorf("request %s with provider off", r.URL) })
	for _, p := range []string{"off", ""} {
		ch, _, cancel := start(t, Options{Provider: p, Endpoint: md.URL})
		select {
		case n := <-ch:
			t.Fatalf("provider %q: channel fired (%+v) before the context ended", p, n)
		case <-time.After(50 * time.Millisecond):
		}
		cancel()
		waitClosed(t, ch)
	}
}

func TestGCE(t *testing.T) {
	var md *metadata
	md = newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Method != http.MethodGet || r.URL.Path != gcePath {
			http.NotFound(w, r)
			return
		}
		if !md.requireHeader(r, "Metadata-Flavor", "Google") {
			http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		if n < 3 {
			fmt.Fprint(w, "FALSE")
			return
		}
		fmt.Fprint(w, "TRUE")
	})
	ch, l, _ := start(t, Options{Provider: "gce", Endpoint: md.URL})
	n := waitNotice(t, ch, l)
	if n.Provider != "gce" || n.Reason != "instance preempted (gce)" || !n.At.IsZero() {
		t.Errorf("notice %+v", n)
	}
	if c := md.count("GET " + gcePath); c != 4 {
		t.Errorf("%d polls; want 3 FALSE then 1 TRUE", c)
	}
	md.checkHeaders(t)
	if l.count("ignored") != 0 {
		t.Errorf("warnings for good answers:\n%s", l)
	}
}

// awsServer plays IMDS with spot instance-action: answers[i] is the i-th
// instance-action answer (status, body); the last one repeats.
type awsServer struct {
	*metadata
	v2only    bool // refuse requests without a valid token (IMDSv1 disabled)
	noV2      bool // the token PUT is not served (IMDSv1 only)
	revokeAt  int  // after this many GETs with a token, that token is refused once
	mu        sync.Mutex
	tokens    int
	valid     string
	tokenGets int
	gets      []string // the token header of each GET
}

func newAWS(t *testing.T, setup func(*awsServer), answers ...[2]any) *awsServer {
	a := &awsServer{}
	if setup != nil {
		setup(a)
	}
	a.metadata = newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == awsTokenPath:
			if a.noV2 {
				http.Error(w, "", http.StatusForbidden)
				return
			}
			if !a.requireHeader(r, "X-aws-ec2-metadata-token-ttl-seconds", "21600") {
				http.Error(w, "", http.StatusBadRequest)
				return
			}
			a.mu.Lock()
			a.tokens++
			a.valid = fmt.Sprintf("tok-%d", a.tokens)
			tok := a.valid
			a.mu.Unlock()
			fmt.Fprint(w, tok)
		case r.Method == http.MethodGet && r.URL.Path == awsActionPath:
			tok := r.Header.Get("X-aws-ec2-metadata-token")
			a.mu.Lock()
			a.gets = append(a.gets, tok)
			ok := tok == a.valid && tok != ""
			if ok {
				a.tokenGets++
				if a.revokeAt > 0 && a.tokenGets == a.revokeAt {
					a.valid, ok = "", false // revoked: the next PUT issues a new one
				}
			}
			a.mu.Unlock()
			if !ok && (a.v2only || tok != "") {
				http.Error(w, "", http.StatusUnauthorized)
				return
			}
			ans := answers[min(n, len(answers)-1)]
			if ans[0].(int) != http.StatusOK {
				http.Error(w, "", ans[0].(int))
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, ans[1])
		default:
			http.NotFound(w, r)
		}
	})
	return a
}

const awsTerminate = `{"action": "terminate", "time": "2026-03-07T12:00:00Z"}`

func TestAWSIMDSv2(t *testing.T) {
	a := newAWS(t, func(a *awsServer) { a.v2only = true }, [2]any{404, ""}, [2]any{404, ""}, [2]any{200, awsTerminate})
	ch, l, _ := start(t, Options{Provider: "aws", Endpoint: a.URL})
	n := waitNotice(t, ch, l)
	if n.Provider != "aws" || n.Reason != "spot instance-action terminate at 2026-03-07T12:00:00Z (aws)" {
		t.Errorf("notice %+v", n)
	}
	if want := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC); !n.At.Equal(want) {
		t.Errorf("At %v; want %v", n.At, want)
	}
	a.checkHeaders(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens != 1 {
		t.Errorf("%d token requests; want 1 (the token lasts 6 h)", a.tokens)
	}
	if len(a.gets) != 3 {
		t.Errorf("%d GETs; want 404, 404, 200", len(a.gets))
	}
	for i, g := range a.gets {
		if g != "tok-1" {
			t.Errorf("GET %d sent token %q; want tok-1", i, g)
		}
	}
	if l.count("IMDSv1") != 0 || l.count("ignored") != 0 {
		t.Errorf("unexpected warnings:\n%s", l)
	}
}

func TestAWSIMDSv1Fallback(t *testing.T) {
	a := newAWS(t, func(a *awsServer) { a.noV2 = true }, [2]any{404, ""}, [2]any{404, ""}, [2]any{200, `{"action":"stop","time":"2026-03-07T12:00:00Z"}`})
	ch, l, _ := start(t, Options{Provider: "aws", Endpoint: a.URL})
	n := waitNotice(t, ch, l)
	if n.Reason != "spot instance-action stop at 2026-03-07T12:00:00Z (aws)" {
		t.Errorf("notice %+v", n)
	}
	if c := a.count("PUT " + awsTokenPath); c != 1 {
		t.Errorf("%d token requests; want 1, then IMDSv1 for good", c)
	}
	a.mu.Lock()
	for i, g := range a.gets {
		if g != "" {
			t.Errorf("IMDSv1 GET %d sent token %q", i, g)
		}
	}
	a.mu.Unlock()
	if l.count("using IMDSv1") != 1 {
		t.Errorf("want one line about IMDSv1:\n%s", l)
	}
}

func TestAWSTokenRevoked401(t *testing.T) {
	// The first token is refused on its 2nd use: the watcher gets a new one
	// and asks again within the same poll. (The server counts the refused
	// GET as an answer too: poll 1 404, poll 2 401 + 404, poll 3 200.)
	a := newAWS(t, func(a *awsServer) { a.v2only, a.revokeAt = true, 2 }, [2]any{404, ""}, [2]any{404, ""}, [2]any{404, ""}, [2]any{200, awsTerminate})
	ch, l, _ := start(t, Options{Provider: "aws", Endpoint: a.URL})
	waitNotice(t, ch, l)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens != 2 {
		t.Errorf("%d token requests; want 2 (one after the 401)", a.tokens)
	}
	if want := []string{"tok-1", "tok-1", "tok-2", "tok-2"}; fmt.Sprint(a.gets) != fmt.Sprint(want) {
		t.Errorf("GET tokens %v; want %v", a.gets, want)
	}
	if l.count("ignored") != 0 {
		t.Errorf("a refreshed token is not a failure:\n%s", l)
	}
}

func TestAWSTokenRenewedBeforeExpiry(t *testing.T) {
	a := newAWS(t, func(a *awsServer) { a.v2only = true }, [2]any{404, ""})
	w, err := newWatcher(Options{Provider: "aws", Endpoint: a.URL})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return now }
	p := w.newPoller(ProviderAWS)
	poll := func() {
		t.Helper()
		if n, err := p.poll(context.Background()); n != nil || err != nil {
			t.Fatalf("poll = %+v, %v", n, err)
		}
	}
	poll()
	now = now.Add(5 * time.Hour)
	poll()
	if c := a.count("PUT " + awsTokenPath); c != 1 {
		t.Fatalf("%d token requests after 5 h; want 1", c)
	}
	now = now.Add(time.Hour) // 6 h: the token expires; renewed before use
	poll()
	if c := a.count("PUT " + awsTokenPath); c != 2 {
		t.Fatalf("%d token requests after 6 h; want 2", c)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if last := a.gets[len(a.gets)-1]; last != "tok-2" {
		t.Errorf("last GET used %q; want tok-2", last)
	}
}

// azure plays scheduled events; docs[i] is the i-th answer, the last repeats.
func newAzure(t *testing.T, vmName string, docs ...string) *metadata {
	var md *metadata
	md = newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if !md.requireHeader(r, "Metadata", "true") {
			http.Error(w, `{"error":"Bad request. Required metadata header not specified"}`, http.StatusBadRequest)
			return
		}
		switch {
		case r.URL.Path == "/metadata/scheduledevents" && r.URL.Query().Get("api-version") == "2020-07-01":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, docs[min(n, len(docs)-1)])
		case r.URL.Path == "/metadata/instance/compute/name" && r.URL.Query().Get("format") == "text" && vmName != "":
			fmt.Fprint(w, vmName)
		default:
			http.NotFound(w, r)
		}
	})
	return md
}

const (
	azureEmpty   = `{"DocumentIncarnation": 1, "Events": []}`
	azureFreeze  = `{"DocumentIncarnation": 2, "Events": [{"EventId": "F1", "EventStatus": "Scheduled", "EventType": "Freeze", "ResourceType": "VirtualMachine", "Resources": ["vm-a"], "NotBefore": "Mon, 09 Mar 2026 18:29:47 GMT"}]}`
	azurePreempt = `{"DocumentIncarnation": 3, "Events": [{"EventId": "P1", "EventStatus": "Scheduled", "EventType": "Preempt", "ResourceType": "VirtualMachine", "Resources": ["vm-a"], "NotBefore": "Mon, 09 Mar 2026 18:30:17 GMT", "Description": "", "EventSource": "Platform", "DurationInSeconds": -1}]}`
)

func TestAzure(t *testing.T) {
	md := newAzure(t, "vm-a", azureEmpty, azureFreeze, azureFreeze, azurePreempt)
	ch, l, _ := start(t, Options{Provider: "azure", Endpoint: md.URL})
	n := waitNotice(t, ch, l)
	if n.Provider != "azure" || n.Reason != "scheduled event Preempt (EventId P1) not before Mon, 09 Mar 2026 18:30:17 GMT (azure)" {
		t.Errorf("notice %+v (a Freeze event must not count)", n)
	}
	if want := time.Date(2026, 3, 9, 18, 30, 17, 0, time.UTC); !n.At.Equal(want) {
		t.Errorf("At %v; want %v", n.At, want)
	}
	if c := md.count("GET /metadata/scheduledevents"); c != 4 {
		t.Errorf("%d polls; want empty, Freeze, Freeze, Preempt", c)
	}
	if c := md.count("GET /metadata/instance/compute/name"); c != 1 {
		t.Errorf("VM name asked %d times; want once", c)
	}
	md.checkHeaders(t)
}

func TestAzureOnlyThisVM(t *testing.T) {
	other := `{"DocumentIncarnation": 4, "Events": [{"EventId": "X", "EventType": "Preempt", "Resources": ["vm-b"]}]}`
	mine := `{"DocumentIncarnation": 5, "Events": [{"EventId": "X", "EventType": "Preempt", "Resources": ["vm-b"]}, {"EventId": "T1", "EventType": "Terminate", "Resources": ["VM-A"]}]}`
	t.Run("name from the metadata service", func(t *testing.T) {
		md := newAzure(t, "vm-a", other, other, mine)
		ch, l, _ := start(t, Options{Provider: "azure", Endpoint: md.URL})
		if n := waitNotice(t, ch, l); n.Reason != "scheduled event Terminate (EventId T1) (azure)" {
			t.Errorf("notice %+v; want the Terminate event for this VM", n)
		}
	})
	t.Run("name from the options", func(t *testing.T) {
		md := newAzure(t, "", other, other, mine)
		ch, l, _ := start(t, Options{Provider: "azure", Endpoint: md.URL, VMName: "vm-a"})
		if n := waitNotice(t, ch, l); n.Reason != "scheduled event Terminate (EventId T1) (azure)" {
			t.Errorf("notice %+v; want the Terminate event for this VM", n)
		}
		if c := md.count("GET /metadata/instance/compute/name"); c != 0 {
			t.Errorf("VM name asked %d times though the options give it", c)
		}
	})
	t.Run("name unknown: every event counts", func(t *testing.T) {
		md := newAzure(t, "", azureEmpty, other)
		ch, l, _ := start(t, Options{Provider: "azure", Endpoint: md.URL})
		if n := waitNotice(t, ch, l); n.Reason != "scheduled event Preempt (EventId X) (azure)" {
			t.Errorf("notice %+v", n)
		}
		if l.count("name is unknown") != 1 || md.count("GET /metadata/instance/compute/name") != 1 {
			t.Errorf("want one name lookup (404 is final) and one line about it:\n%s", l)
		}
	})
}

// A garbage answer is ignored with one warning however often it comes;
// polling goes on and the notice still arrives.
func TestGarbageIgnoredOnce(t *testing.T) {
	garbage := []string{"<html>captive portal</html>", "MAYBE", "{\"action\":", "\x00\x01\x02", `{"Events": []}`}
	cases := map[string]struct {
		path string
		good string
	}{
		"gce":   {gcePath, "TRUE"},
		"aws":   {awsActionPath, awsTerminate},
		"azure": {"/metadata/scheduledevents", azurePreempt},
	}
	for provider, c := range cases {
		t.Run(provider, func(t *testing.T) {
			md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if r.Method == http.MethodGet && r.URL.Path == c.path {
					if n < len(garbage) {
						fmt.Fprint(w, garbage[n])
						return
					}
					fmt.Fprint(w, c.good)
					return
				}
				if r.Method == http.MethodPut && r.URL.Path == awsTokenPath {
					fmt.Fprint(w, "tok")
					return
				}
				http.NotFound(w, r)
			})
			ch, l, _ := start(t, Options{Provider: provider, Endpoint: md.URL})
			n := waitNotice(t, ch, l)
			if n.Provider != provider {
				t.Errorf("notice %+v", n)
			}
			if got := md.count("GET " + c.path); got != len(garbage)+1 {
				t.Errorf("%d polls; want %d", got, len(garbage)+1)
			}
			if l.count("ignored") != 1 || l.count("answers again") != 1 {
				t.Errorf("want one warning for %d garbage answers, and one recovery line:\n%s", len(garbage), l)
			}
		})
	}
}

// A hanging endpoint never blocks the poll loop: each attempt times out,
// one warning is logged, and the notice comes once the endpoint answers.
func TestHangingEndpoint(t *testing.T) {
	const hangs = 4
	cases := map[string]struct {
		path string
		good string
	}{
		"gce":   {gcePath, "TRUE"},
		"aws":   {awsActionPath, awsTerminate},
		"azure": {"/metadata/scheduledevents", azurePreempt},
	}
	for provider, c := range cases {
		t.Run(provider, func(t *testing.T) {
			md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
				switch {
				case r.Method == http.MethodGet && r.URL.Path == c.path:
					if n < hangs {
						hang(r)
						return
					}
					fmt.Fprint(w, c.good)
				case r.Method == http.MethodPut && r.URL.Path == awsTokenPath:
					fmt.Fprint(w, "tok")
				default:
					http.NotFound(w, r)
				}
			})
			ch, l, _ := start(t, Options{Provider: provider, Endpoint: md.URL, HTTPTimeout: 20 * time.Millisecond})
			if n := waitNotice(t, ch, l); n.Provider != provider {
				t.Errorf("notice %+v", n)
			}
			if got := md.count("GET " + c.path); got != hangs+1 {
				t.Errorf("%d polls; want %d", got, hangs+1)
			}
			if l.count("ignored") != 1 || l.count("no answer within 20ms") != 1 {
				t.Errorf("want one warning for %d hung polls:\n%s", hangs, l)
			}
		})
	}
}

// A hanging answer body (headers sent, body never finished) is bounded too.
func TestHangingBody(t *testing.T) {
	md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n < 2 {
			w.Header().Set("Content-Length", "5")
			fmt.Fprint(w, "TR")
			w.(http.Flusher).Flush()
			hang(r)
			return
		}
		fmt.Fprint(w, "TRUE")
	})
	ch, l, _ := start(t, Options{Provider: "gce", Endpoint: md.URL, HTTPTimeout: 20 * time.Millisecond})
	waitNotice(t, ch, l)
	if l.count("ignored") != 1 {
		t.Errorf("want one warning:\n%s", l)
	}
}

// The warning is repeated when the kind of failure changes, and after the
// endpoint recovered and fails again; never once per poll.
func TestWarningOncePerKind(t *testing.T) {
	seq := []string{"500", "500", "500", "garbage", "garbage", "FALSE", "FALSE", "503", "503", "unreachable", "unreachable", "TRUE"}
	md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch s := seq[min(n, len(seq)-1)]; s {
		case "500":
			http.Error(w, "oops", 500)
		case "503":
			http.Error(w, "later", 503)
		case "garbage":
			fmt.Fprint(w, "<html>")
		case "unreachable":
			// Drop the connection without an answer.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			fmt.Fprint(w, s)
		}
	})
	ch, l, _ := start(t, Options{Provider: "gce", Endpoint: md.URL})
	waitNotice(t, ch, l)
	// Warnings: HTTP 500, garbage, HTTP 503, unreachable; recovered twice.
	if l.count("ignored") != 4 || l.count("answers again") != 2 {
		t.Errorf("want 4 warnings and 2 recovery lines:\n%s", l)
	}
	for _, want := range []string{"HTTP status 500", "neither TRUE nor FALSE", "HTTP status 503"} {
		if l.count(want) != 1 {
			t.Errorf("want one line with %q:\n%s", want, l)
		}
	}
}

func TestCancelWhileHanging(t *testing.T) {
	var reqs atomic.Int32
	md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
		reqs.Add(1)
		hang(r)
	})
	ch, l, cancel := start(t, Options{Provider: "gce", Endpoint: md.URL, HTTPTimeout: time.Hour})
	deadline := time.Now().Add(eventually)
	for reqs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	waitClosed(t, ch)
	if l.count("ignored") != 0 {
		t.Errorf("the end of the watch is not a failure:\n%s", l)
	}
}

func TestAuto(t *testing.T) {
	t.Run("gce", func(t *testing.T) {
		md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if r.URL.Path != gcePath || r.Header.Get("Metadata-Flavor") != "Google" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Metadata-Flavor", "Google")
			fmt.Fprint(w, []string{"FALSE", "TRUE"}[min(n, 1)])
		})
		ch, l, _ := start(t, Options{Provider: "auto", Endpoint: md.URL})
		if n := waitNotice(t, ch, l); n.Provider != "gce" {
			t.Errorf("notice %+v", n)
		}
		if l.count("the gce metadata service answers") != 1 {
			t.Errorf("log:\n%s", l)
		}
	})
	t.Run("aws", func(t *testing.T) {
		a := newAWS(t, nil, [2]any{404, ""}, [2]any{200, awsTerminate})
		ch, l, _ := start(t, Options{Provider: "auto", Endpoint: a.URL})
		if n := waitNotice(t, ch, l); n.Provider != "aws" {
			t.Errorf("notice %+v", n)
		}
	})
	t.Run("azure", func(t *testing.T) {
		md := newAzure(t, "vm-a", azureEmpty, azurePreempt)
		ch, l, _ := start(t, Options{Provider: "auto", Endpoint: md.URL})
		if n := waitNotice(t, ch, l); n.Provider != "azure" {
			t.Errorf("notice %+v", n)
		}
	})
	t.Run("bare metal", func(t *testing.T) {
		md := newMetadata(t, func(w http.ResponseWriter, r *http.Request, n int) { http.NotFound(w, r) })
		ch, l, cancel := start(t, Options{Provider: "auto", Endpoint: md.URL})
		deadline := time.Now().Add(eventually)
		for l.count("no cloud metadata service answered") == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if l.count("no cloud metadata service answered") != 1 || !strings.Contains(l.String(), KeyProvider) {
			t.Fatalf("want one line saying no cloud answered:\n%s", l)
		}
		select {
		case n := <-ch:
			t.Fatalf("channel fired (%+v) before the context ended", n)
		default:
		}
		if c := md.count("GET " + gcePath); c != detectRounds {
			t.Errorf("%d gce probes; want %d", c, detectRounds)
		}
		cancel()
		waitClosed(t, ch)
	})
}

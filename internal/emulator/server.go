package emulator

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/apischema"
)

// Options configures a Server. The zero value is usable: no credentials
// (add some with AddCredentials), 24h tokens, no snapshot, 600 s worker
// timeout, API version apischema.MaxVersion (2.31), the wall clock and a
// discarding logger.
type Options struct {
	// Credentials maps access key -> secret key.
	Credentials map[string]string
	// TokenTTL is the lifetime of tokens issued by auth.login when the
	// request does not ask for expiration_sec. Default 24h.
	TokenTTL time.Duration
	// SnapshotPath, when set, is a JSON file loaded by New and rewritten
	// atomically (debounced) after changes and on Close.
	SnapshotPath string
	// WorkerTimeout is how long a worker stays listed without activity when
	// workers.register did not send a timeout. Default 600 s.
	WorkerTimeout time.Duration
	// APIVersion is the server's max API version, reported in tokens and
	// envelopes. Default apischema.MaxVersion ("2.31"): the newest version
	// whose responses internal/apischema writes down.
	APIVersion string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives one line per failed call and snapshot errors.
	Logger *slog.Logger
}

// ServerVersion is the server_version claim of issued tokens.
const ServerVersion = "2.0.0-emulator"

// TaskUpdateTimeout is apiserver.workers.task_update_timeout: a task whose
// last_update is older than this is no longer "run by a worker" for tasks.stop.
const TaskUpdateTimeout = 600 * time.Second

// OutageMode selects how calls fail while the server is down.
type OutageMode int

const (
	// OutageNone serves normally.
	OutageNone OutageMode = iota
	// Outage503 answers every call with HTTP 503 and an error envelope.
	Outage503
	// OutageReset closes every connection without an answer.
	OutageReset
)

// Server is the emulator. All state lives behind one mutex so every call is
// atomic with respect to every other call.
type Server struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	creds      map[string]string
	signingKey []byte
	tasks      map[string]map[string]any // task id -> document
	taskOrder  []string                  // creation order
	queues     map[string]*api.Queue
	queueOrder []string
	projects   map[string]map[string]any
	projOrder  []string
	workers    map[string]*worker
	events     map[string][]storedEvent
	eventSeq   int64
	requests   map[string]int
	outage     OutageMode
	dropAfter  map[string]int // endpoint -> calls left whose answer is dropped

	saveMu    sync.Mutex // serialises snapshot writes
	dirty     chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	saverDone chan struct{}
}

// New builds a Server, loading opts.SnapshotPath when it exists. A snapshot
// that cannot be read is logged and ignored (the server starts empty).
func New(opts Options) *Server {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 24 * time.Hour
	}
	if opts.WorkerTimeout <= 0 {
		opts.WorkerTimeout = 600 * time.Second
	}
	if opts.APIVersion == "" {
		opts.APIVersion = apischema.MaxVersion
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger.With("component", "emulator"),
		creds:     map[string]string{},
		tasks:     map[string]map[string]any{},
		queues:    map[string]*api.Queue{},
		projects:  map[string]map[string]any{},
		workers:   map[string]*worker{},
		events:    map[string][]storedEvent{},
		requests:  map[string]int{},
		dropAfter: map[string]int{},
		dirty:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		saverDone: make(chan struct{}),
	}
	s.signingKey = make([]byte, 32)
	_, _ = rand.Read(s.signingKey)
	for k, v := range opts.Credentials {
		s.creds[k] = v
	}
	if opts.SnapshotPath != "" {
		if err := s.loadSnapshot(opts.SnapshotPath); err != nil {
			s.log.Error("snapshot not loaded; starting empty", "path", opts.SnapshotPath, "err", err)
		}
		go s.saver()
	} else {
		close(s.saverDone)
	}
	return s
}

// Close flushes the snapshot (when configured) and stops the background
// saver. It is safe to call more than once. The handler keeps answering.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		<-s.saverDone
		if s.opts.SnapshotPath != "" {
			err = s.saveSnapshot()
		}
	})
	return err
}

// changed marks the state dirty for the debounced snapshot saver. Callers
// hold s.mu.
func (s *Server) changed() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fmtTime renders times the way clearml-server does (ISO 8601, UTC, micro-
// seconds, explicit offset).
func fmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000+00:00")
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04:05.000000+00:00", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// call is one decoded API request.
type call struct {
	endpoint string
	version  string
	body     []byte
	data     map[string]json.RawMessage
	header   http.Header
	remote   string
	query    map[string][]string
	identity identity
	now      time.Time
}

type handlerFunc func(s *Server, c *call) (any, *apiError)

// endpoints lists every served endpoint. Anything else is 404, as on the real
// open-source server (which, for instance, has no workers.set_runtime_properties).
var endpoints = map[string]handlerFunc{
	"tasks.create":           (*Server).tasksCreate,
	"tasks.get_by_id":        (*Server).tasksGetByID,
	"tasks.get_all":          (*Server).tasksGetAll,
	"tasks.edit":             (*Server).tasksEdit,
	"tasks.enqueue":          (*Server).tasksEnqueue,
	"tasks.dequeue":          (*Server).tasksDequeue,
	"tasks.started":          (*Server).tasksStarted,
	"tasks.stopped":          statusEndpoint("stopped"),
	"tasks.failed":           statusEndpoint("failed"),
	"tasks.completed":        (*Server).tasksCompleted,
	"tasks.close":            statusEndpoint("closed"),
	"tasks.publish":          statusEndpoint("published"),
	"tasks.ping":             (*Server).tasksPing,
	"tasks.stop":             (*Server).tasksStop,
	"tasks.reset":            (*Server).tasksReset,
	"tasks.clone":            (*Server).tasksClone,
	"tasks.set_requirements": (*Server).tasksSetRequirements,
	"tasks.get_hyper_params": (*Server).tasksGetHyperParams,
	"queues.create":          (*Server).queuesCreate,
	"queues.get_all":         (*Server).queuesGetAll,
	"queues.get_by_id":       (*Server).queuesGetByID,
	"queues.get_default":     (*Server).queuesGetDefault,
	"queues.get_next_task":   (*Server).queuesGetNextTask,
	"queues.add_task":        (*Server).queuesAddTask,
	"queues.remove_task":     (*Server).queuesRemoveTask,
	"workers.register":       (*Server).workersRegister,
	"workers.unregister":     (*Server).workersUnregister,
	"workers.status_report":  (*Server).workersStatusReport,
	"workers.get_all":        (*Server).workersGetAll,
	"events.add_batch":       (*Server).eventsAddBatch,
	"events.get_task_log":    (*Server).eventsGetTaskLog,
	"projects.get_all":       (*Server).projectsGetAll,
	"projects.create":        (*Server).projectsCreate,
}

var pathRE = regexp.MustCompile(`^/?(v(\d+\.?\d+)/)?([a-zA-Z_]\w+\.[a-zA-Z_]\w+)/?$`)

// Handler serves the ClearML REST API: /<svc>.<action> and
// /v<X.Y>/<svc>.<action>, with GET+JSON body or POST.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serve)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	outage := s.outage
	s.mu.Unlock()
	if outage == OutageReset {
		dropConnection(w)
		return
	}

	m := pathRE.FindStringSubmatch(r.URL.Path)
	reqVersion := s.opts.APIVersion
	name := ""
	if m != nil {
		name = m[3]
		if m[2] != "" {
			reqVersion = m[2]
		}
	}
	s.mu.Lock()
	key := name
	if key == "" {
		key = r.URL.Path
	}
	s.requests[key]++
	s.mu.Unlock()

	// Until the endpoint is resolved, actual_version is null (as on the
	// real server).
	rep := replier{s: s, w: w, name: name, requested: reqVersion}
	if outage == Outage503 {
		rep.send(nil, errOutage())
		return
	}
	if m == nil {
		rep.send(nil, errMalformedPath(r.URL.Path))
		return
	}
	if _, ok := api.ParseVersion(reqVersion); !ok {
		rep.send(nil, errInvalidVersion(reqVersion))
		return
	}
	actual, ok := s.resolve(name, reqVersion)
	if !ok {
		rep.send(nil, errEndpointNotFound(name, reqVersion))
		return
	}
	rep.actual = actual
	if name == "auth.login" {
		rep.send(s.authLogin(r))
		return
	}
	h := endpoints[name]
	id, aerr := s.authenticate(r)
	if aerr != nil {
		rep.send(nil, aerr)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		rep.send(nil, errBadBody(err.Error()))
		return
	}
	c := &call{endpoint: name, version: reqVersion, body: body, header: r.Header, remote: r.RemoteAddr, query: r.URL.Query(), identity: id}
	if name != "events.add_batch" {
		if c.data, aerr = decodeObject(body, c.query); aerr != nil {
			rep.send(nil, aerr)
			return
		}
	}
	s.mu.Lock()
	c.now = s.opts.Now()
	s.expireWorkers(c.now)
	data, aerr := h(s, c)
	drop := s.dropAfter[name] > 0
	if drop {
		s.dropAfter[name]--
	}
	s.mu.Unlock()
	if drop {
		s.log.Info("answer dropped after the call was carried out", "endpoint", name)
		dropConnection(w)
		return
	}
	rep.send(data, aerr)
}

// dropConnection closes the call's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // HTTP/2 or a recorder: abort the stream
}

// Endpoints returns the emulator's routing table: every endpoint it serves,
// auth.login included, sorted. Tests use it to cover them all.
func Endpoints() []string {
	out := append(sortedKeys(endpoints), "auth.login")
	slices.Sort(out)
	return out
}

// resolve finds the endpoint revision that serves a call, as the real server
// does: the newest revision not above the requested version (capped at the
// server's). ok is false for an endpoint the emulator does not serve, or a
// version below the endpoint's first revision (both are 404 on the real
// server). actual is that revision's version, the envelope's actual_version.
func (s *Server) resolve(name, requested string) (actual string, ok bool) {
	if _, served := endpoints[name]; !served && name != "auth.login" {
		return "", false
	}
	v := s.capVersion(requested)
	e, known := apischema.Lookup(name)
	if !known {
		return v, true // not in the schema tables; the schema test reports it
	}
	rev, ok := e.At(v)
	return rev.Since, ok
}

// decodeObject parses a JSON object body; an empty body is {}. Query
// parameters fill keys the body does not set (the real server merges them).
func decodeObject(body []byte, query map[string][]string) (map[string]json.RawMessage, *apiError) {
	data := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &data); err != nil {
			return nil, errBadBody(err.Error())
		}
		if data == nil { // body was "null"
			data = map[string]json.RawMessage{}
		}
	}
	for k, vs := range query {
		if _, ok := data[k]; ok || len(vs) == 0 {
			continue
		}
		v := vs[len(vs)-1]
		if v == "true" || v == "false" || json.Valid([]byte(v)) && (strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{")) {
			data[k] = json.RawMessage(v)
		} else if _, err := strconv.ParseFloat(v, 64); err == nil {
			data[k] = json.RawMessage(v)
		} else {
			b, _ := json.Marshal(v)
			data[k] = b
		}
	}
	return data, nil
}

type envelope struct {
	Meta meta `json:"meta"`
	Data any  `json:"data"`
}

type meta struct {
	ID            string         `json:"id"`
	Trx           string         `json:"trx"`
	Endpoint      endpointMeta   `json:"endpoint"`
	ResultCode    int            `json:"result_code"`
	ResultSubcode int            `json:"result_subcode"`
	ResultMsg     string         `json:"result_msg"`
	ErrorStack    *string        `json:"error_stack"`
	ErrorData     map[string]any `json:"error_data"`
}

type endpointMeta struct {
	Name             string  `json:"name"`
	RequestedVersion string  `json:"requested_version"`
	ActualVersion    *string `json:"actual_version"` // null until resolved
}

// replier writes one call's envelope.
type replier struct {
	s         *Server
	w         http.ResponseWriter
	name      string
	requested string
	actual    string // "" until the endpoint is resolved: null in the envelope
}

func (r replier) send(data any, aerr *apiError) {
	id := newID()
	env := envelope{Meta: meta{
		ID: id, Trx: id,
		Endpoint:   endpointMeta{Name: r.name, RequestedVersion: r.requested},
		ResultCode: http.StatusOK, ResultMsg: "OK", ErrorData: map[string]any{},
	}}
	if r.actual != "" {
		env.Meta.Endpoint.ActualVersion = &r.actual
	}
	if aerr != nil {
		env.Meta.ResultCode, env.Meta.ResultSubcode, env.Meta.ResultMsg = aerr.code, aerr.subcode, aerr.msg
		env.Data = map[string]any{}
		r.s.log.Info("call failed", "endpoint", r.name, "code", aerr.code, "subcode", aerr.subcode, "msg", aerr.msg)
	} else if data == nil {
		env.Data = map[string]any{}
	} else {
		env.Data = data
	}
	b, err := json.Marshal(env)
	if err != nil {
		http.Error(r.w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.w.Header().Set("Content-Type", "application/json")
	r.w.WriteHeader(env.Meta.ResultCode)
	_, _ = r.w.Write(b)
}

// capVersion is the requested version, capped at the server's max.
func (s *Server) capVersion(requested string) string {
	if _, ok := api.ParseVersion(requested); !ok || api.CompareVersions(requested, s.opts.APIVersion) > 0 {
		return s.opts.APIVersion
	}
	return requested
}

// field decodes data[name] into out. Missing or null fields leave out alone
// and return false; required fields report a validation error.
func (c *call) field(name string, out any, required bool) (bool, *apiError) {
	raw, ok := c.data[name]
	if !ok || string(raw) == "null" {
		if required {
			return false, errFieldRequired(name)
		}
		return false, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, errValidation(name, "invalid value: "+err.Error())
	}
	return true, nil
}

// str reads a string field; required strings must also be non-empty.
func (c *call) str(name string, required bool) (string, *apiError) {
	var v string
	if _, err := c.field(name, &v, required); err != nil {
		return "", err
	}
	if required && v == "" {
		return "", errFieldRequired(name)
	}
	return v, nil
}

func (c *call) boolean(name string) (bool, *apiError) {
	var v bool
	_, err := c.field(name, &v, false)
	return v, err
}

// strList accepts a list of strings or a single string.
func (c *call) strList(name string) ([]string, *apiError) {
	raw, ok := c.data[name]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, errValidation(name, "expected a list of strings")
	}
	return []string{one}, nil
}

// SetDown starts (true) or ends (false) a simulated outage in which every
// call gets HTTP 503. See SetOutage for dropped connections.
func (s *Server) SetDown(down bool) {
	if down {
		s.SetOutage(Outage503)
	} else {
		s.SetOutage(OutageNone)
	}
}

// SetOutage selects how calls fail; OutageNone ends the outage.
func (s *Server) SetOutage(m OutageMode) {
	s.mu.Lock()
	s.outage = m
	s.mu.Unlock()
}

// DropAnswers makes the next n calls of endpoint ("tasks.enqueue") lose
// their answer: each is carried out (the state changes as usual, failures
// included) and then its connection is closed without a reply, as when a
// connection breaks between the server and the agent (auth.login is never
// dropped). n <= 0 cancels.
func (s *Server) DropAnswers(endpoint string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.dropAfter, endpoint)
		return
	}
	s.dropAfter[endpoint] = n
}

// Requests returns how many calls each endpoint ("tasks.get_all",
// "auth.login", ...) has received, failed ones included. Unparseable paths
// are counted under the raw path.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// ResetRequests zeroes the request counters.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = map[string]int{}
	s.mu.Unlock()
}

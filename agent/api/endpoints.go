package api

import (
	"cmp"
	"net/http"
	"strconv"
	"strings"
)

// endpointSpec says how the Python agent calls one endpoint, and whether
// the client may send it again.
type endpointSpec struct {
	// version is the API version in the URL path (/v<version>/). "" means the
	// default (Config.APIVersion, "2.5": the Python agent's typed requests),
	// raw means no version in the path (the server picks its newest).
	version string
	raw     bool
	// post forces POST whatever Config.DefaultMethod says.
	post bool
	// repeat says whether a call whose answer was lost may be sent again.
	repeat repeat
}

// repeat is an endpoint's retry policy after a failure that may have
// happened after the server carried the call out (the connection dropped
// after the request was written, a read timeout, a proxy's 502 or 504).
type repeat int8

const (
	// byName: a read (an action named get*) is safe, anything else is once.
	byName repeat = iota
	// safe: carrying the call out twice leaves the server as once (a read, a
	// status set to a value, a report, a ping), so every transport error and
	// 429/502/503/504/509 is retried.
	safe
	// once: a second call does the work again (a second queue entry, a
	// second task, a second pop) or fails for having been done. It is
	// retried only when the request was never sent (dial refused, DNS) or
	// the server refused it before carrying it out (429, or 503 with a
	// ClearML envelope); any other failure is returned at once.
	once
)

// endpoints is the one table of per-endpoint versions, methods and retry
// policies (reference sections 2.1, 2.4-2.6, 3.5). Endpoints not listed use
// the default typed version, Config.DefaultMethod and the byName policy.
// Each version is one at which clearml-server's schema defines every field
// this package sends to that endpoint (the schema, not the handler, is the
// contract: a field the version does not define may or may not be
// honoured); TestRequestsFollowTheSchema checks that against
// internal/apischema, and TestEveryEndpointHasARetryPolicy that every
// endpoint the emulator serves is decided here.
var endpoints = map[string]endpointSpec{
	// A pop: sent again, it pops the next entry and the first is lost in
	// the answer; the daemon's lost-pop check puts such a task back.
	"queues.get_next_task": {version: "2.14", repeat: once}, // raw call with explicit v2.14
	"queues.get_all":       {version: "2.21", repeat: safe}, // search_hidden is defined from 2.21
	"queues.get_by_id":     {repeat: safe},
	"queues.get_default":   {repeat: safe},
	"queues.create":        {repeat: once},                  // a second one fails: name already exists
	"queues.add_task":      {repeat: once},                  // a second entry of the task
	"queues.remove_task":   {repeat: once},                  // a second one fails: task not queued
	"tasks.get_all":        {version: "2.14", repeat: safe}, // abort test; run_one_task uses 2.15 for runtime only
	"tasks.get_by_id":      {repeat: safe},
	"tasks.create":         {version: "2.13", repeat: once}, // container is defined from 2.13; a second task
	"tasks.clone":          {repeat: once},                  // a second clone
	"tasks.edit":           {version: "2.13", repeat: safe}, // runtime, container and models from 2.13; sets fields
	"tasks.enqueue":        {version: "2.19", repeat: once}, // queue_name is defined from 2.19; a second queue entry (force) or a same-status refusal
	"tasks.dequeue":        {version: "2.26", repeat: safe}, // new_status is defined from 2.26; a second one changes nothing
	// Status reports set the status to a value, and the server accepts a
	// change to the status a task already has (only tasks.enqueue refuses
	// it), so the second call of a pair finds the status already set.
	"tasks.started":          {repeat: safe},
	"tasks.stopped":          {repeat: safe},
	"tasks.failed":           {repeat: safe},
	"tasks.completed":        {repeat: safe},
	"tasks.close":            {repeat: safe},
	"tasks.publish":          {repeat: safe},
	"tasks.stop":             {repeat: safe},
	"tasks.reset":            {repeat: safe},
	"tasks.ping":             {repeat: safe}, // touches last_update
	"tasks.set_requirements": {repeat: safe},
	"tasks.get_hyper_params": {repeat: safe},
	"projects.get_all":       {version: "2.14", repeat: safe}, // search_hidden is defined from 2.14
	"projects.create":        {repeat: once},                  // a second one fails: name already exists
	// At least once by design: logship resends a packet whose answer it did
	// not get, and a duplicated log line is better than a lost one.
	"events.add_batch":               {raw: true, post: true, repeat: safe}, // POST <host>/events.add_batch, json-lines
	"events.get_task_log":            {version: "2.9", repeat: safe},        // navigate_earlier/from_timestamp form
	"workers.register":               {repeat: safe},                        // re-registers the same worker id
	"workers.unregister":             {repeat: safe},                        // a second one may answer "not registered", which callers log
	"workers.status_report":          {repeat: safe},
	"workers.get_all":                {repeat: safe},
	"workers.set_runtime_properties": {raw: true, post: true, repeat: safe}, // enterprise only
	"workers.cluster_report":         {raw: true, post: true, repeat: safe}, // enterprise only
	"users.get_vaults":               {version: "2.15", repeat: safe},       // enterprise only
	"auth.login":                     {repeat: safe},                        // a second token; the first expires unused
}

// Repeatable reports whether endpoint may be sent again after a failure
// that may have come after the server carried it out (see the repeat
// policies of the endpoint table).
func Repeatable(endpoint string) bool {
	switch endpoints[endpoint].repeat {
	case safe:
		return true
	case once:
		return false
	}
	_, action, _ := strings.Cut(endpoint, ".")
	return strings.HasPrefix(action, "get")
}

// pathFor returns "/v<ver>/<endpoint>" (or "/<endpoint>" for raw calls),
// never asking for a version above the server's (server == "" means unknown).
func pathFor(endpoint, defaultVersion, server string) string {
	spec := endpoints[endpoint]
	if spec.raw {
		return "/" + endpoint
	}
	v := spec.version
	if v == "" {
		v = defaultVersion
	}
	if server != "" && CompareVersions(v, server) > 0 {
		v = server
	}
	return "/v" + v + "/" + endpoint
}

// methodFor returns the HTTP method for endpoint.
func methodFor(endpoint, defaultMethod string) string {
	if endpoints[endpoint].post {
		return http.MethodPost
	}
	return defaultMethod
}

// ParseVersion splits an API version such as "2.13" (a leading "v" allowed)
// into [2 13]; a bare major ("2") is minor 0. ok is false for anything else.
// It is the one reading of ClearML API versions: the client, the emulator
// and internal/apischema use it.
func ParseVersion(v string) ([2]int, bool) {
	maj, min, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	a, err := strconv.Atoi(maj)
	if err != nil || a < 0 {
		return [2]int{}, false
	}
	b := 0
	if min != "" {
		if b, err = strconv.Atoi(min); err != nil || b < 0 {
			return [2]int{}, false
		}
	}
	return [2]int{a, b}, true
}

// CompareVersions compares two API versions numerically ("2.14" > "2.5") and
// returns -1, 0 or +1. An unparsable version sorts below every parsable one.
func CompareVersions(a, b string) int {
	av, aok := ParseVersion(a)
	bv, bok := ParseVersion(b)
	switch {
	case aok && !bok:
		return 1
	case !aok && bok:
		return -1
	}
	return cmp.Or(cmp.Compare(av[0], bv[0]), cmp.Compare(av[1], bv[1]))
}

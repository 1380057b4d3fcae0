package api

import (
	"cmp"
	"net/http"
	"strconv"
	"strings"
)

// endpointSpec says how the Python agent calls one endpoint.
type endpointSpec struct {
	// version is the API version in the URL path (/v<version>/). "" means the
	// default (Config.APIVersion, "2.5": the Python agent's typed requests),
	// raw means no version in the path (the server picks its newest).
	version string
	raw     bool
	// post forces POST whatever Config.DefaultMethod says.
	post bool
}

// endpoints is the one table of per-endpoint versions and methods
// (reference sections 2.1, 2.4-2.6, 3.5). Endpoints not listed use the
// default typed version and Config.DefaultMethod. Each version is one at
// which clearml-server's schema defines every field this package sends to
// that endpoint (the schema, not the handler, is the contract: a field the
// version does not define may or may not be honoured);
// TestRequestsFollowTheSchema checks that against internal/apischema.
var endpoints = map[string]endpointSpec{
	"queues.get_next_task":           {version: "2.14"},       // raw call with explicit v2.14
	"queues.get_all":                 {version: "2.21"},       // search_hidden is defined from 2.21
	"tasks.get_all":                  {version: "2.14"},       // abort test; run_one_task uses 2.15 for runtime only
	"tasks.create":                   {version: "2.13"},       // container is defined from 2.13
	"tasks.edit":                     {version: "2.13"},       // runtime, container and models from 2.13
	"tasks.enqueue":                  {version: "2.19"},       // queue_name is defined from 2.19
	"tasks.dequeue":                  {version: "2.26"},       // new_status is defined from 2.26
	"projects.get_all":               {version: "2.14"},       // search_hidden is defined from 2.14
	"events.add_batch":               {raw: true, post: true}, // POST <host>/events.add_batch, json-lines
	"events.get_task_log":            {version: "2.9"},        // navigate_earlier/from_timestamp form
	"workers.set_runtime_properties": {raw: true, post: true}, // enterprise only
	"workers.cluster_report":         {raw: true, post: true}, // enterprise only
	"users.get_vaults":               {version: "2.15"},       // enterprise only
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

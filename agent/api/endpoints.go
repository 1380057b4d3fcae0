package api

import (
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
	if server != "" && compareVersions(v, server) > 0 {
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

// compareVersions compares "major.minor" strings numerically ("2.14" > "2.5").
// Unparsable parts count as 0.
func compareVersions(a, b string) int {
	am, an := splitVersion(a)
	bm, bn := splitVersion(b)
	switch {
	case am != bm:
		return cmpInt(am, bm)
	default:
		return cmpInt(an, bn)
	}
}

func splitVersion(v string) (int, int) {
	maj, min, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	a, _ := strconv.Atoi(maj)
	b, _ := strconv.Atoi(min)
	return a, b
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

package emulator

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// apiError is a failed call: HTTP status = result_code, plus the subcode and
// message the real server would send.
//
// Codes follow clearml-server apiserver/apierrors/errors.conf. Messages follow
// its format: the default message capitalised, then " (extra)" and then
// ": key=value, ..." for the offending input.
//
//	400/0    malformed request path ("Invalid request path /x")
//	400/2    request path has invalid version
//	400/11   missing required fields (unused: the server reports those as 400/12)
//	400/12   validation error ("Validation error (error for field 'task'. field is required!)")
//	400/17   batch request contains no items (events.add_batch with an empty body)
//	400/21   malformed regular expression (get_all name patterns)
//	400/101  invalid task id
//	400/110  invalid task status (transition not allowed, edit of a non-draft task)
//	400/122  task is missing expected fields (set_requirements without script)
//	400/401  invalid project id
//	400/701  invalid queue id
//	400/703  invalid queue id or task not in queue (queues.remove_task)
//	400/707  no default queue
//	400/801  value combination already exists (duplicate queue or project name)
//	400/1001 invalid worker id (empty worker)
//	401/20   missing credentials       ("Unauthorized (missing credentials)")
//	401/21   malformed credentials     (Authorization header that is neither Basic nor Bearer, or bad base64)
//	401/22   invalid credentials       ("Unauthorized (invalid credentials)")
//	401/30   invalid or expired token  ("Invalid token (token expired)"; the real server raises
//	         InvalidToken for expired JWTs, there is no separate "expired" subcode)
//	404/0    unknown endpoint ("Unable to find endpoint for name x.y and version 2.31")
//	503/0    simulated outage (SetDown)
type apiError struct {
	code    int
	subcode int
	msg     string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d/%d: %s", e.code, e.subcode, e.msg)
}

// newErr builds a message the way clearml-server's BaseError does:
// base + " (extra)" + ": k=v, ...". kv alternates keys and values.
func newErr(code, subcode int, base, extra string, kv ...any) *apiError {
	msg := base
	if extra != "" {
		msg += " (" + extra + ")"
	}
	if len(kv) > 0 {
		parts := make([]string, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			parts = append(parts, fmt.Sprintf("%v=%s", kv[i], fmtKwarg(kv[i+1])))
		}
		msg += ": " + strings.Join(parts, ", ")
	}
	return &apiError{code: code, subcode: subcode, msg: msg}
}

func fmtKwarg(v any) string {
	switch x := v.(type) {
	case []string:
		return "(" + strings.Join(x, ", ") + ")"
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

func errMalformedPath(path string) *apiError {
	return newErr(http.StatusBadRequest, 0, "Invalid request path "+path, "")
}

func errInvalidVersion(v string) *apiError {
	return newErr(http.StatusBadRequest, 2, "Request path has invalid version", "", "version", v)
}

func errEndpointNotFound(name, version string) *apiError {
	return newErr(http.StatusNotFound, 0,
		fmt.Sprintf("Unable to find endpoint for name %s and version %s", name, version), "")
}

func errFieldRequired(field string) *apiError {
	return newErr(http.StatusBadRequest, 12, "Validation error",
		fmt.Sprintf("error for field '%s'. field is required!", field))
}

func errValidation(field, problem string) *apiError {
	return newErr(http.StatusBadRequest, 12, "Validation error",
		fmt.Sprintf("error for field '%s'. %s", field, problem))
}

func errBadBody(detail string) *apiError {
	return newErr(http.StatusBadRequest, 12, "Validation error", "invalid JSON body: "+detail)
}

func errBatchEmpty() *apiError {
	return newErr(http.StatusBadRequest, 17, "Batch request contains no items", "")
}

func errBadRegex(pattern string, err error) *apiError {
	return newErr(http.StatusBadRequest, 21, "Malformed regular expression", err.Error(), "pattern", pattern)
}

func errInvalidTaskID(id string) *apiError {
	return newErr(http.StatusBadRequest, 101, "Invalid task id", "", "id", id)
}

func errStatusChange(current, next string) *apiError {
	return newErr(http.StatusBadRequest, 110, "Invalid task status", "Invalid status change",
		"current_status", current, "new_status", next)
}

func errTaskStatus(extra string, kv ...any) *apiError {
	return newErr(http.StatusBadRequest, 110, "Invalid task status", extra, kv...)
}

func errMissingTaskFields(extra, task string) *apiError {
	return newErr(http.StatusBadRequest, 122, "Task is missing expected fields", extra, "task", task)
}

func errInvalidProjectID(id string) *apiError {
	return newErr(http.StatusBadRequest, 401, "Invalid project id", "", "id", id)
}

func errInvalidQueueID(id string) *apiError {
	return newErr(http.StatusBadRequest, 701, "Invalid queue id", "", "id", id)
}

func errTaskNotQueued(queue, task string) *apiError {
	return newErr(http.StatusBadRequest, 703, "Invalid queue id or task not in queue", "", "queue", queue, "task", task)
}

func errNoDefaultQueue() *apiError {
	return newErr(http.StatusBadRequest, 707, "No queue is tagged as the default queue for this company", "")
}

func errNotUnique(kind, name string) *apiError {
	return newErr(http.StatusBadRequest, 801, "Value combination already exists", kind+" name is not unique", "name", name)
}

func errInvalidWorkerID(id string) *apiError {
	return newErr(http.StatusBadRequest, 1001, "Invalid worker id", "", "worker", id)
}

func errMissingCredentials() *apiError {
	return &apiError{code: http.StatusUnauthorized, subcode: 20, msg: "Unauthorized (missing credentials)"}
}

func errMalformedCredentials(extra string) *apiError {
	return &apiError{code: http.StatusUnauthorized, subcode: 21, msg: "Unauthorized (malformed credentials): " + extra}
}

func errInvalidCredentials() *apiError {
	return &apiError{code: http.StatusUnauthorized, subcode: 22, msg: "Unauthorized (invalid credentials)"}
}

func errInvalidToken(extra string) *apiError {
	return newErr(http.StatusUnauthorized, 30, "Invalid token", extra)
}

func errOutage() *apiError {
	return &apiError{code: http.StatusServiceUnavailable, subcode: 0, msg: "Service unavailable (emulator outage)"}
}

// sortedKeys is used for deterministic error_info maps and listings.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package api

import (
	"errors"
	"fmt"

	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Result codes and subcodes the agent reacts to, as the ClearML server defines
// them (apiserver errors table). Compare with IsCode.
const (
	CodeBadRequest   = 400
	CodeUnauthorized = 401
	CodeForbidden    = 403
	CodeNotFound     = 404
	CodeServerError  = 500

	SubNotSupported            = 1    // 400/1 endpoint not supported
	SubInvalidID               = 10   // 400/10
	SubMissingRequiredFields   = 11   // 400/11
	SubValidationError         = 12   // 400/12
	SubInvalidTaskID           = 101  // 400/101
	SubInvalidTaskStatus       = 110  // 400/110
	SubTaskNotStarted          = 111  // 400/111
	SubTaskInProgress          = 112  // 400/112
	SubTaskPublished           = 113  // 400/113
	SubFailedChangingTaskState = 121  // 400/121 lost a status race
	SubInvalidProjectID        = 401  // 400/401
	SubInvalidQueueID          = 701  // 400/701
	SubQueueNotEmpty           = 702  // 400/702
	SubInvalidWorkerID         = 1001 // 400/1001
	SubWorkerNotRegistered     = 1004 // 400/1004

	SubNotAuthorized      = 1  // 401/1
	SubBadCredentials     = 21 // 401/21
	SubInvalidCredentials = 22 // 401/22
	SubInvalidToken       = 30 // 401/30
)

// Error is a ClearML server answer whose meta.result_code is not 200. It is
// also used for non-envelope answers (a proxy's 502 page): then ResultCode is
// the HTTP status and ResultMsg the start of the body.
type Error struct {
	Endpoint      string // service.action
	HTTPStatus    int
	ResultCode    int
	ResultSubcode int
	ResultMsg     string

	enveloped bool // the answer was a ClearML envelope (not a proxy's page)
}

// Error returns one line, e.g. "tasks.started: 400/101 Invalid task id: id=abc".
func (e *Error) Error() string {
	msg := oneline.Squash(e.ResultMsg, maxMessage)
	if msg == "" {
		msg = "(no result_msg)"
	}
	s := fmt.Sprintf("%s: %d/%d %s", e.Endpoint, e.ResultCode, e.ResultSubcode, msg)
	if e.HTTPStatus != 0 && e.HTTPStatus != e.ResultCode {
		s += fmt.Sprintf(" (HTTP %d)", e.HTTPStatus)
	}
	return s
}

// IsCode reports whether err is (or wraps) an *Error with the given result
// code and subcode. A negative subcode matches any subcode.
func IsCode(err error, code, subcode int) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.ResultCode == code && (subcode < 0 || e.ResultSubcode == subcode)
}

// IsInvalidQueue reports a 400/701 InvalidQueueId answer.
func IsInvalidQueue(err error) bool { return IsCode(err, CodeBadRequest, SubInvalidQueueID) }

// IsInvalidTask reports a 400/101 InvalidTaskId answer (unknown or deleted task).
func IsInvalidTask(err error) bool { return IsCode(err, CodeBadRequest, SubInvalidTaskID) }

// IsStatusConflict reports an answer refusing a status change: an invalid
// transition (400/110-113) or a lost race (400/121).
func IsStatusConflict(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.ResultCode != CodeBadRequest {
		return false
	}
	switch e.ResultSubcode {
	case SubInvalidTaskStatus, SubTaskNotStarted, SubTaskInProgress, SubTaskPublished, SubFailedChangingTaskState:
		return true
	}
	return false
}

// IsUnsupported reports that the server does not know the endpoint (for
// example workers.set_runtime_properties on the open-source server).
func IsUnsupported(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.ResultCode == CodeNotFound || e.HTTPStatus == CodeNotFound ||
		(e.ResultCode == CodeBadRequest && e.ResultSubcode == SubNotSupported)
}

// IsUnauthorized reports a 401 answer (after the client's one re-login).
func IsUnauthorized(err error) bool {
	var le *LoginError
	if errors.As(err, &le) {
		return true
	}
	return IsCode(err, CodeUnauthorized, -1)
}

// LoginError is a failed auth.login: bad credentials, a bad token, or a host
// that is not an API server.
type LoginError struct {
	Host       string
	HTTPStatus int
	ResultCode int
	ResultSub  int
	ResultMsg  string
	TokenMode  bool // logged in with CLEARML_AUTH_TOKEN rather than key/secret
}

func (e *LoginError) Error() string {
	msg := oneline.Squash(e.ResultMsg, maxMessage)
	switch {
	case e.HTTPStatus == 200:
		return fmt.Sprintf("auth.login at %s returned no token: %s; api.api_server must point at the API server (usually port 8008), not the web UI or file server", e.Host, msg)
	case e.HTTPStatus == 401 || e.HTTPStatus == 403 || e.ResultCode == 401:
		if e.TokenMode {
			return fmt.Sprintf("invalid credentials for %s: %s; check CLEARML_AUTH_TOKEN (expired or revoked?)", e.Host, msg)
		}
		return fmt.Sprintf("invalid credentials for %s: %s; check access_key/secret_key (api.credentials or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY)", e.Host, msg)
	default:
		return fmt.Sprintf("auth.login at %s failed: %d/%d %s (HTTP %d); check api.api_server / CLEARML_API_HOST", e.Host, e.ResultCode, e.ResultSub, msg, e.HTTPStatus)
	}
}

// TransportError means the server could not be reached or kept failing with
// a retryable status until the retries or the context ran out.
type TransportError struct {
	Endpoint string
	URL      string
	Attempts int
	Err      error // the last failure
	Ctx      error // context error that ended the retries, if any
	// MaybeDone: the call is not repeatable (see Repeatable) and its last
	// attempt failed after the request was sent, so the server may have
	// carried it out; it was not sent again.
	MaybeDone bool
}

func (e *TransportError) Error() string {
	if e.MaybeDone {
		s := fmt.Sprintf("%s: no answer from %s after the request was sent (attempt %d): %s", e.Endpoint, e.URL, e.Attempts, oneline.Squash(errString(e.Err), maxMessage))
		if e.Ctx != nil {
			s += " (" + e.Ctx.Error() + ")"
		}
		return s + "; not sent again since the server may have carried it out: check its effect before repeating it"
	}
	s := fmt.Sprintf("%s: server %s unreachable after %d attempt(s): %s", e.Endpoint, e.URL, e.Attempts, oneline.Squash(errString(e.Err), maxMessage))
	if e.Ctx != nil {
		s += " (" + e.Ctx.Error() + ")"
	}
	return s + "; check api.api_server / CLEARML_API_HOST and that the server is running"
}

// Unwrap exposes both the last failure and the context error, so that
// errors.Is(err, context.DeadlineExceeded) works.
func (e *TransportError) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Err != nil {
		out = append(out, e.Err)
	}
	if e.Ctx != nil {
		out = append(out, e.Ctx)
	}
	return out
}

// IsAnswerLost reports a call that is not repeatable whose answer was lost
// after the request was sent: the server may or may not have carried it out.
func IsAnswerLost(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.MaybeDone
}

func errString(err error) string {
	if err == nil {
		return "no error recorded"
	}
	return err.Error()
}

// maxMessage caps server messages and undecodable answers (HTML pages) in
// errors, so that they stay on one readable log line.
const maxMessage = 300

package emulator

import "github.com/gpufleet/clearml-agent-go/agent/api"

// transitions is the server's table of status changes allowed without force
// (reference section 9, apiserver/bll/task/utils.py). Same-state updates are
// always allowed; force skips the check.
var transitions = map[string][]string{
	api.StatusCreated:    {api.StatusQueued, api.StatusInProgress},
	api.StatusQueued:     {api.StatusCreated, api.StatusInProgress, api.StatusStopped},
	api.StatusInProgress: {api.StatusStopped, api.StatusFailed, api.StatusCreated, api.StatusCompleted},
	api.StatusStopped: {api.StatusClosed, api.StatusCreated, api.StatusFailed, api.StatusQueued,
		api.StatusInProgress, api.StatusPublished, api.StatusPublishing, api.StatusCompleted},
	api.StatusClosed:     {api.StatusCreated, api.StatusFailed, api.StatusPublished, api.StatusPublishing, api.StatusStopped},
	api.StatusFailed:     {api.StatusCreated, api.StatusStopped, api.StatusPublished, api.StatusQueued},
	api.StatusCompleted:  {api.StatusPublished, api.StatusInProgress, api.StatusCreated},
	api.StatusPublishing: {api.StatusPublished},
	api.StatusPublished:  {},
}

// AllowedTransition reports whether a task may move from one status to
// another without force.
func AllowedTransition(from, to string) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// setStatus validates and applies a status change, stamping status_reason,
// status_message, status_changed, last_update and last_changed_by. It returns
// the changed fields for the UpdateResponse. Callers hold s.mu.
func (s *Server) setStatus(c *call, doc map[string]any, to string, force bool, reason, message string) (map[string]any, *apiError) {
	from := getStr(doc, "status")
	if !force && !AllowedTransition(from, to) {
		return nil, errStatusChange(from, to)
	}
	now := fmtTime(c.now)
	fields := map[string]any{
		"status":          to,
		"status_reason":   reason,
		"status_message":  message,
		"status_changed":  now,
		"last_update":     now,
		"last_changed_by": c.identity.User,
	}
	for k, v := range fields {
		doc[k] = v
	}
	doc["last_change"] = now
	s.changed()
	return fields, nil
}

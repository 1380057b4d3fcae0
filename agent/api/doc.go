// Package api is the typed REST client of a ClearML server, wire-compatible
// with the Python clearml-agent.
//
// It owns: authentication (auth.login, JWT decoding without verification,
// token refresh before expiry and once after a 401), the request envelope
// ({meta, data}) and its errors (*Error, *LoginError, *TransportError), the
// per-endpoint table of API versions and retry policies (endpoints.go),
// retries with capped exponential backoff on connection errors and HTTP
// 429/502/503/504 (for calls that are not safe to repeat, only on failures
// before the server carried them out: dial, DNS, 429, enveloped 503), and one
// typed method per endpoint the agent uses, one file per service (auth.go,
// queues.go, tasks.go, workers.go, events.go, projects.go). The wire types
// shared with other packages live in types.go. Every request field exists in
// clearml-server's schema at the version the client puts in the URL, and
// every answer field it decodes exists in the response schema; the tests
// check both against internal/apischema.
//
// It must not: read clearml.conf or the environment (agent/config builds a
// Config), fall back to the demo credentials, decide agent policy (which
// status to set, when to poll), or log anything above Debug level except a
// warning when TLS verification is off.
package api

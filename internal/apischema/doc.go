// Package apischema writes down, as Go tables, the part of clearml-server's
// REST API schema (apiserver/schema/services/*.conf) that this project
// speaks: for every endpoint the emulator serves, the response in effect at
// MaxVersion (the newest API version the emulator claims), and for every
// endpoint the client (agent/api) calls, the request in effect at the version
// the client puts in its URL. It also has a validator that checks JSON
// against those tables: field names, JSON types, nested objects and arrays,
// enums (task status and type, log levels, 0/1 counters), date-time strings
// and required fields.
//
// The facts (names, types, enums, the API version each revision starts at)
// come from clearml-server's schema; the tables and the code are this
// project's own. Each endpoint lists every revision the server defines, so
// that At picks the revision a server would serve (the newest one not above
// the requested version) and the emulator can report it as actual_version;
// a revision whose request or response is not written down here is nil, and
// asking for it is an error rather than a silent pass.
//
// It owns: the tables (tasks.go, queues.go, workers.go, events.go,
// projects.go, auth.go), the envelope shape (envelope.go), the validator
// (validate.go) and version arithmetic (endpoints.go).
//
// It must not: import other packages of this module, or loosen a check to
// let a test pass. A field the schema lacks but the real server sends anyway
// is written down with Extra and the reason (see the task document).
//
// Tests that use it: internal/emulator (every served endpoint's response) and
// agent/api (every request the client sends).
package apischema

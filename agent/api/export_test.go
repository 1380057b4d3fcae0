package api

// PathFor is pathFor for the external tests (the URL path, version
// included, that the client uses for an endpoint).
var PathFor = pathFor

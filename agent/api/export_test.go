package api

// PathFor is pathFor for the external tests (the URL path, version
// included, that the client uses for an endpoint).
var PathFor = pathFor

// RepeatDecided reports whether the endpoint table sets endpoint's retry
// policy (rather than leaving it to the byName rule).
func RepeatDecided(endpoint string) bool { return endpoints[endpoint].repeat != byName }

package apischema

import (
	"fmt"
	"sort"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// MaxVersion is the newest API version whose responses the tables write
// down: the version the emulator claims by default. (clearml-server itself
// is at 2.34; revisions above MaxVersion are listed but not written down.)
const MaxVersion = "2.31"

// Revision is an endpoint's shape from API version Since on, until the next
// revision.
type Revision struct {
	Since string
	// Request is the request body (for a JSON-lines endpoint: one line).
	// Nil means this revision's request is not written down here.
	Request *Type
	// Response is the envelope's data. Nil: not written down here.
	Response *Type
}

// Endpoint is one service.action with every revision clearml-server
// defines for it, oldest first.
type Endpoint struct {
	Name string
	// JSONLines marks a batch endpoint whose body is one JSON object per
	// line (events.add_batch).
	JSONLines bool
	Revisions []Revision
}

var table = map[string]*Endpoint{}

// add registers endpoints; the table files call it from init.
func add(eps ...*Endpoint) {
	for _, e := range eps {
		if _, dup := table[e.Name]; dup {
			panic("apischema: endpoint " + e.Name + " written down twice")
		}
		table[e.Name] = e
	}
}

// Lookup returns the endpoint named name ("tasks.get_all").
func Lookup(name string) (*Endpoint, bool) {
	e, ok := table[name]
	return e, ok
}

// Names returns every endpoint in the tables, sorted.
func Names() []string {
	out := make([]string, 0, len(table))
	for n := range table {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// At returns the revision a server serves for a call at version: the newest
// one whose Since is not above version. ok is false when version is below
// the first revision (the server answers 404 then) or is not major.minor.
func (e *Endpoint) At(version string) (Revision, bool) {
	if _, ok := api.ParseVersion(version); !ok {
		return Revision{}, false
	}
	found := -1
	for i, r := range e.Revisions {
		if api.CompareVersions(version, r.Since) >= 0 {
			found = i
		}
	}
	if found < 0 {
		return Revision{}, false
	}
	return e.Revisions[found], true
}

// Request returns the request type of endpoint name at version, or an
// error saying what the tables lack.
func Request(name, version string) (*Type, error) {
	r, err := revision(name, version)
	if err != nil {
		return nil, err
	}
	if r.Request == nil {
		return nil, fmt.Errorf("apischema: the request of %s revision %s (in effect at %s) is not written down; add it to the table", name, r.Since, version)
	}
	return r.Request, nil
}

// Response returns the response type of endpoint name at version, or an
// error saying what the tables lack.
func Response(name, version string) (*Type, error) {
	r, err := revision(name, version)
	if err != nil {
		return nil, err
	}
	if r.Response == nil {
		return nil, fmt.Errorf("apischema: the response of %s revision %s (in effect at %s) is not written down; add it to the table", name, r.Since, version)
	}
	return r.Response, nil
}

func revision(name, version string) (Revision, error) {
	e, ok := Lookup(name)
	if !ok {
		return Revision{}, fmt.Errorf("apischema: endpoint %s has no schema entry; add it to the table", name)
	}
	r, ok := e.At(version)
	if !ok {
		return Revision{}, fmt.Errorf("apischema: %s does not exist at version %q (its first revision is %s)", name, version, e.Revisions[0].Since)
	}
	return r, nil
}

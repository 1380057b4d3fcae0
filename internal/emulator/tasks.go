package emulator

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/apischema"
)

// Task documents are kept as generic JSON objects so that fields the
// emulator does not interpret (hyperparams, configuration, models...) round-
// trip untouched and only_fields projections work on any dotted path.

func getStr(doc map[string]any, key string) string {
	v, _ := doc[key].(string)
	return v
}

func getMap(doc map[string]any, key string) map[string]any {
	v, _ := doc[key].(map[string]any)
	return v
}

func getStrs(doc map[string]any, key string) []string {
	switch v := doc[key].(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// toDoc converts any JSON-able value to a generic document.
func toDoc(v any) map[string]any {
	b, _ := json.Marshal(v)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// deepCopy returns an independent copy of a generic JSON value.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	case []string:
		return slices.Clone(x)
	default:
		return x
	}
}

func docToTask(doc map[string]any) api.Task {
	var t api.Task
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &t)
	return t
}

func (s *Server) task(id string) (map[string]any, *apiError) {
	if id == "" {
		return nil, errFieldRequired("task")
	}
	doc, ok := s.tasks[id]
	if !ok {
		return nil, errInvalidTaskID(id)
	}
	return doc, nil
}

// createFields and editFields are the task fields tasks.create and
// tasks.edit take: the request properties of the schema tables at the
// newest version, less the control fields. The real server silently drops
// anything else; the emulator rejects it so that client mistakes show.
var (
	createFields = settable("tasks.create")
	editFields   = settable("tasks.edit", "task", "force")
)

func settable(endpoint string, control ...string) []string {
	t, err := apischema.Request(endpoint, apischema.MaxVersion)
	if err != nil {
		panic("emulator: " + err.Error())
	}
	var out []string
	for _, k := range sortedKeys(t.Props) {
		if !slices.Contains(control, k) {
			out = append(out, k)
		}
	}
	return out
}

var taskTypes = apischema.TaskTypes

// setFields copies the allowed fields of the request into the document.
// Anything else (except the control keys) is a validation error. As on the
// real server, output_dest lands in output.destination, and null values
// unset (the database does not keep nulls).
func setFields(c *call, doc map[string]any, allowed []string, control ...string) *apiError {
	for _, k := range sortedKeys(c.data) {
		if slices.Contains(control, k) {
			continue
		}
		if !slices.Contains(allowed, k) {
			return errValidation(k, "field is not allowed here; settable fields are "+strings.Join(allowed, ", "))
		}
		var v any
		if err := json.Unmarshal(c.data[k], &v); err != nil {
			return errValidation(k, "invalid value: "+err.Error())
		}
		v = pruneNulls(v)
		if k == "type" {
			if t, _ := v.(string); !slices.Contains(taskTypes, t) {
				return errValidation("type", "value must be one of "+strings.Join(taskTypes, ", "))
			}
		}
		if k == "output_dest" {
			out := getMap(doc, "output")
			if out == nil {
				out = map[string]any{}
				doc["output"] = out
			}
			if v == nil {
				delete(out, "destination")
			} else {
				out["destination"] = v
			}
			continue
		}
		if v == nil {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	return nil
}

// pruneNulls drops null members of objects, at any depth.
func pruneNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
			} else {
				x[k] = pruneNulls(e)
			}
		}
	case []any:
		for i, e := range x {
			x[i] = pruneNulls(e)
		}
	}
	return v
}

func (s *Server) newTaskDoc(c *call) map[string]any {
	now := fmtTime(c.now)
	return map[string]any{
		"id": newID(), "status": api.StatusCreated, "created": now, "last_update": now,
		"status_changed": now, "company": c.identity.Company, "user": c.identity.User,
		"last_changed_by": c.identity.User,
	}
}

func (s *Server) insertTask(doc map[string]any) {
	id := getStr(doc, "id")
	s.tasks[id] = doc
	s.taskOrder = append(s.taskOrder, id)
	s.changed()
}

func (s *Server) tasksCreate(c *call) (any, *apiError) {
	if _, err := c.str("name", true); err != nil {
		return nil, err
	}
	if _, err := c.str("type", true); err != nil {
		return nil, err
	}
	if p, _ := c.str("project", false); p != "" {
		if _, ok := s.projects[p]; !ok {
			return nil, errInvalidProjectID(p)
		}
	}
	doc := s.newTaskDoc(c)
	if err := setFields(c, doc, createFields); err != nil {
		return nil, err
	}
	s.insertTask(doc)
	return map[string]any{"id": doc["id"]}, nil
}

func (s *Server) tasksGetByID(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"task": deepCopy(doc)}, nil
}

func isHidden(doc map[string]any) bool {
	return slices.Contains(getStrs(doc, "system_tags"), "hidden")
}

// project returns only the dotted paths in fields (and always "id").
func project(doc map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return deepCopy(doc).(map[string]any)
	}
	out := map[string]any{"id": doc["id"]}
	for _, f := range fields {
		parts := strings.Split(f, ".")
		var cur any = doc
		ok := true
		for _, p := range parts {
			m, isMap := cur.(map[string]any)
			if !isMap {
				ok = false
				break
			}
			if cur, ok = m[p]; !ok {
				break
			}
		}
		if !ok {
			continue
		}
		dst := out
		for _, p := range parts[:len(parts)-1] {
			next, isMap := dst[p].(map[string]any)
			if !isMap {
				next = map[string]any{}
				dst[p] = next
			}
			dst = next
		}
		dst[parts[len(parts)-1]] = deepCopy(cur)
	}
	return out
}

// nameFilter compiles a get_all "name" pattern: a case-insensitive regular
// expression searched anywhere in the name, as the real server does.
func nameFilter(pattern string) (*regexp.Regexp, *apiError) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile("(?i)" + pattern)
	if err != nil {
		return nil, errBadRegex(pattern, err)
	}
	return re, nil
}

// getAll holds the arguments every *.get_all endpoint shares.
type getAll struct {
	ids    []string
	fields []string // only_fields
	hidden bool     // search_hidden
	name   *regexp.Regexp
}

func (c *call) getAllArgs() (getAll, *apiError) {
	var g getAll
	var err *apiError
	if g.ids, err = c.strList("id"); err != nil {
		return g, err
	}
	if g.fields, err = c.strList("only_fields"); err != nil {
		return g, err
	}
	if g.hidden, err = c.boolean("search_hidden"); err != nil {
		return g, err
	}
	name, err := c.str("name", false)
	if err != nil {
		return g, err
	}
	g.name, err = nameFilter(name)
	return g, err
}

// skip reports whether the document id/name fails the id and name filters,
// or is hidden (by system tag) and hidden documents were not asked for.
func (g getAll) skip(id, name string, hidden bool) bool {
	return len(g.ids) > 0 && !slices.Contains(g.ids, id) || g.name != nil && !g.name.MatchString(name) ||
		hidden && !g.hidden && len(g.ids) == 0
}

func (s *Server) tasksGetAll(c *call) (any, *apiError) {
	g, err := c.getAllArgs()
	if err != nil {
		return nil, err
	}
	statuses, err := c.strList("status")
	if err != nil {
		return nil, err
	}
	projects, err := c.strList("project")
	if err != nil {
		return nil, err
	}
	types, err := c.strList("type")
	if err != nil {
		return nil, err
	}
	var page, pageSize int
	if _, err := c.field("page", &page, false); err != nil {
		return nil, err
	}
	if _, err := c.field("page_size", &pageSize, false); err != nil {
		return nil, err
	}
	out := []any{}
	for _, id := range s.taskOrder {
		doc := s.tasks[id]
		switch {
		case g.skip(id, getStr(doc, "name"), isHidden(doc)),
			len(statuses) > 0 && !slices.Contains(statuses, getStr(doc, "status")),
			len(projects) > 0 && !slices.Contains(projects, getStr(doc, "project")),
			len(types) > 0 && !slices.Contains(types, getStr(doc, "type")):
			continue
		}
		out = append(out, project(doc, g.fields))
	}
	if pageSize > 0 {
		start := min(page*pageSize, len(out))
		out = out[start:min(start+pageSize, len(out))]
	}
	return map[string]any{"tasks": out}, nil
}

func (s *Server) tasksEdit(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	force, err := c.boolean("force")
	if err != nil {
		return nil, err
	}
	if st := getStr(doc, "status"); st != api.StatusCreated && !force {
		return nil, errTaskStatus("", "expected", api.StatusCreated, "status", st)
	}
	updated := deepCopy(doc).(map[string]any)
	if err := setFields(c, updated, editFields, "task", "force"); err != nil {
		return nil, err
	}
	// The server merges a dict given for an embedded document (script,
	// execution, output, models) into the stored one, one level deep
	// (`{script: {version_num}}` keeps the repository and entry point);
	// other fields (runtime, container, hyperparams, ...) are replaced.
	for _, k := range embeddedDocs {
		var given map[string]any
		if raw, ok := c.data[k]; !ok || json.Unmarshal(raw, &given) != nil || given == nil {
			continue
		}
		old := getMap(doc, k)
		if old == nil {
			continue
		}
		merged := deepCopy(old).(map[string]any)
		for f, v := range given {
			if v == nil {
				delete(merged, f)
				continue
			}
			merged[f] = pruneNulls(v)
		}
		updated[k] = merged
	}
	fields := map[string]any{}
	for _, k := range sortedKeys(c.data) {
		switch k {
		case "task", "force":
		case "output_dest":
			fields["output"] = updated["output"]
		default:
			fields[k] = updated[k]
		}
	}
	now := fmtTime(c.now)
	updated["last_update"], updated["last_change"], updated["last_changed_by"] = now, now, c.identity.User
	s.tasks[id] = updated
	s.changed()
	return map[string]any{"updated": 1, "fields": fields}, nil
}

// embeddedDocs are the task fields that are embedded documents in the
// server's model (tasks.edit merges into them).
var embeddedDocs = []string{"script", "execution", "output", "models"}

// statusArgs reads the common {task, status_reason, status_message, force}.
func statusArgs(c *call) (id, reason, message string, force bool, err *apiError) {
	if id, err = c.str("task", true); err != nil {
		return
	}
	if reason, err = c.str("status_reason", false); err != nil {
		return
	}
	if message, err = c.str("status_message", false); err != nil {
		return
	}
	force, err = c.boolean("force")
	return
}

// statusEndpoint builds tasks.stopped / failed / close / publish.
func statusEndpoint(to string) handlerFunc {
	return func(s *Server, c *call) (any, *apiError) {
		id, reason, message, force, err := statusArgs(c)
		if err != nil {
			return nil, err
		}
		doc, err := s.task(id)
		if err != nil {
			return nil, err
		}
		fields, err := s.setStatus(c, doc, to, force, reason, message)
		if err != nil {
			return nil, err
		}
		return map[string]any{"updated": 1, "fields": fields}, nil
	}
}

func (s *Server) tasksStarted(c *call) (any, *apiError) {
	id, reason, message, force, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	fields, err := s.setStatus(c, doc, api.StatusInProgress, force, reason, message)
	if err != nil {
		return nil, err
	}
	if getStr(doc, "started") == "" {
		doc["started"] = fmtTime(c.now)
		fields["started"] = doc["started"]
	}
	return map[string]any{"started": 1, "updated": 1, "fields": fields}, nil
}

func (s *Server) tasksCompleted(c *call) (any, *apiError) {
	id, reason, message, force, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	publish, err := c.boolean("publish")
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	fields, err := s.setStatus(c, doc, api.StatusCompleted, force, reason, message)
	if err != nil {
		return nil, err
	}
	doc["completed"] = fmtTime(c.now)
	fields["completed"] = doc["completed"]
	out := map[string]any{"updated": 1, "fields": fields}
	if publish {
		if pf, err := s.setStatus(c, doc, api.StatusPublished, force, reason, message); err == nil {
			out["fields"], out["published"] = pf, 1
		}
	}
	return out, nil
}

func (s *Server) tasksPing(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	doc["last_update"] = fmtTime(c.now)
	s.changed()
	return map[string]any{}, nil
}

// runByWorker is the real server's is_run_by_worker: a last_worker and a
// last_update younger than TaskUpdateTimeout.
func runByWorker(doc map[string]any, now time.Time) bool {
	if getStr(doc, "last_worker") == "" {
		return false
	}
	t, ok := parseTime(getStr(doc, "last_update"))
	return ok && now.Sub(t) < TaskUpdateTimeout
}

func (s *Server) tasksStop(c *call) (any, *apiError) {
	id, reason, message, force, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "Stopped by " + c.identity.User
	}
	switch st := getStr(doc, "status"); {
	case st == api.StatusQueued:
		s.removeFromQueues(id, "")
		clearQueue(doc)
	case st == api.StatusInProgress && runByWorker(doc, c.now) && !force:
		fields, err := s.setStatus(c, doc, api.StatusInProgress, true, reason, "stopping")
		if err != nil {
			return nil, err
		}
		return map[string]any{"updated": 1, "fields": fields}, nil
	}
	fields, err := s.setStatus(c, doc, api.StatusStopped, force, reason, message)
	if err != nil {
		return nil, err
	}
	return map[string]any{"updated": 1, "fields": fields}, nil
}

func clearQueue(doc map[string]any) {
	if ex := getMap(doc, "execution"); ex != nil {
		delete(ex, "queue")
	}
}

func (s *Server) tasksReset(c *call) (any, *apiError) {
	id, reason, message, force, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	if st := getStr(doc, "status"); st == api.StatusPublished && !force {
		return nil, newErr(400, 113, "Task published (invalid task status)", "", "task", id)
	}
	fields, err := s.setStatus(c, doc, api.StatusCreated, true, reason, message)
	if err != nil {
		return nil, err
	}
	removed := s.removeFromQueues(id, "")
	clearQueue(doc)
	for _, k := range []string{"started", "completed", "published", "enqueue_status", "last_worker", "output"} {
		delete(doc, k)
	}
	return map[string]any{"updated": 1, "fields": fields, "dequeued": map[string]any{"removed": removed}}, nil
}

func (s *Server) tasksClone(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	src, err := s.task(id)
	if err != nil {
		return nil, err
	}
	name, err := c.str("new_task_name", false)
	if err != nil {
		return nil, err
	}
	proj, err := c.str("new_task_project", false)
	if err != nil {
		return nil, err
	}
	doc := s.newTaskDoc(c)
	for _, k := range []string{"name", "type", "project", "comment", "tags", "system_tags", "script", "execution",
		"container", "hyperparams", "configuration", "models"} {
		if v, ok := src[k]; ok {
			doc[k] = deepCopy(v)
		}
	}
	if dest, ok := getMap(src, "output")["destination"]; ok { // the clone keeps only the destination
		doc["output"] = map[string]any{"destination": dest}
	}
	clearQueue(doc)
	doc["parent"] = id
	if name != "" {
		doc["name"] = name
	}
	if proj != "" {
		doc["project"] = proj
	}
	var tags []string
	if ok, err := c.field("new_task_tags", &tags, false); err != nil {
		return nil, err
	} else if ok {
		doc["tags"] = tags
	}
	var overrides map[string]any
	if ok, err := c.field("execution_overrides", &overrides, false); err != nil {
		return nil, err
	} else if ok {
		ex := getMap(doc, "execution")
		if ex == nil {
			ex = map[string]any{}
			doc["execution"] = ex
		}
		for k, v := range overrides {
			ex[k] = v
		}
	}
	s.insertTask(doc)
	return map[string]any{"id": doc["id"]}, nil
}

func (s *Server) tasksSetRequirements(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	var req map[string]any
	if _, err := c.field("requirements", &req, true); err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	script := getMap(doc, "script")
	if script == nil {
		return nil, errMissingTaskFields("Task has no script field", id)
	}
	script["requirements"] = req
	doc["last_update"] = fmtTime(c.now)
	s.changed()
	return map[string]any{"updated": 1, "fields": map[string]any{"script.requirements": req}}, nil
}

// tasksGetHyperParams returns the "hyperparams" sections as the flat list the
// real server sends: [{section, name, value, type, description}].
func (s *Server) tasksGetHyperParams(c *call) (any, *apiError) {
	ids, err := c.strList("tasks")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, errFieldRequired("tasks")
	}
	params := []any{}
	for _, id := range ids {
		doc, err := s.task(id)
		if err != nil {
			return nil, err
		}
		list := []any{}
		hp := getMap(doc, "hyperparams")
		for _, sec := range sortedKeys(hp) {
			vals, _ := hp[sec].(map[string]any)
			for _, name := range sortedKeys(vals) {
				p, _ := vals[name].(map[string]any)
				if p == nil {
					continue
				}
				e := deepCopy(p).(map[string]any)
				e["section"], e["name"] = sec, name
				list = append(list, e)
			}
		}
		params = append(params, map[string]any{"task": id, "hyperparams": list})
	}
	return map[string]any{"params": params}, nil
}

func (s *Server) tasksEnqueue(c *call) (any, *apiError) {
	id, reason, message, force, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	qid, err := c.str("queue", false)
	if err != nil {
		return nil, err
	}
	qname, err := c.str("queue_name", false)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	var q *api.Queue
	switch {
	case qid != "" && qname != "":
		return nil, newErr(400, 15, "Conflicting fields", "queue and queue_name cannot be used together", "queue", qid, "queue_name", qname)
	case qid != "":
		if q = s.queues[qid]; q == nil {
			return nil, errInvalidQueueID(qid)
		}
	case qname != "":
		if q = s.queueByName(qname); q == nil {
			// the real server auto-creates a queue named in queue_name
			q = s.createQueue(c.now, qname, nil, nil, c.identity.User)
		}
	default:
		if q = s.defaultQueue(); q == nil {
			return nil, errNoDefaultQueue()
		}
	}
	prior := getStr(doc, "status")
	fields, err := s.setStatus(c, doc, api.StatusQueued, force, reason, message)
	if err != nil {
		return nil, err
	}
	s.removeFromQueues(id, "")
	q.Entries = append(q.Entries, api.QueueEntry{Task: id, Added: fmtTime(c.now)})
	ex := getMap(doc, "execution")
	if ex == nil {
		ex = map[string]any{}
		doc["execution"] = ex
	}
	ex["queue"] = q.ID
	if prior != api.StatusQueued {
		doc["enqueue_status"] = prior
	}
	fields["execution.queue"] = q.ID
	fields["enqueue_status"] = doc["enqueue_status"]
	return map[string]any{"queued": 1, "updated": 1, "fields": fields}, nil
}

func (s *Server) tasksDequeue(c *call) (any, *apiError) {
	id, reason, message, _, err := statusArgs(c)
	if err != nil {
		return nil, err
	}
	newStatus, err := c.str("new_status", false)
	if err != nil {
		return nil, err
	}
	doc, err := s.task(id)
	if err != nil {
		return nil, err
	}
	if q := getStr(getMap(doc, "execution"), "queue"); q != "" {
		s.removeFromQueues(id, q)
	}
	if all, err := c.boolean("remove_from_all_queues"); err != nil {
		return nil, err
	} else if all {
		s.removeFromQueues(id, "")
	}
	clearQueue(doc)
	// The real server answers dequeued=1 whenever the task exists, whether
	// or not an entry was removed.
	st := getStr(doc, "status")
	if st != api.StatusQueued && st != api.StatusInProgress {
		s.changed()
		return map[string]any{"dequeued": 1, "updated": 0, "fields": map[string]any{}}, nil
	}
	to := newStatus
	if to == "" {
		to = getStr(doc, "enqueue_status")
	}
	if to == "" {
		to = api.StatusCreated
	}
	fields, err := s.setStatus(c, doc, to, true, reason, message)
	if err != nil {
		return nil, err
	}
	delete(doc, "enqueue_status")
	return map[string]any{"dequeued": 1, "updated": 1, "fields": fields}, nil
}

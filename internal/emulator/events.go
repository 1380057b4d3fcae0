package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// storedEvent is one accepted event, kept exactly as received plus the
// server's "@timestamp".
type storedEvent struct {
	Seq  int64          `json:"seq"`
	TS   int64          `json:"ts"`
	Doc  map[string]any `json:"doc"`
	Task string         `json:"task"`
}

var eventTypes = []string{
	"log", "training_stats_scalar", "training_stats_vector", "training_debug_image", "plot",
}

// parseEvents accepts a json-lines body (the agent's format) or a JSON array.
func parseEvents(body []byte) ([]map[string]any, *apiError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errBatchEmpty()
	}
	if trimmed[0] == '[' {
		var list []map[string]any
		if err := json.Unmarshal(trimmed, &list); err != nil {
			return nil, errBadBody(err.Error())
		}
		if len(list) == 0 {
			return nil, errBatchEmpty()
		}
		return list, nil
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(trimmed))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			return nil, errBadBody(fmt.Sprintf("line %d: %v", line, err))
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, errBadBody(err.Error())
	}
	if len(out) == 0 {
		return nil, errBatchEmpty()
	}
	return out, nil
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		f, err := x.Float64()
		return int64(f), err == nil
	case float64:
		return int64(x), true
	}
	return 0, false
}

// eventsAddBatch stores events in the order received. Invalid events are
// counted in errors/errors_info and the rest are still added.
func (s *Server) eventsAddBatch(c *call) (any, *apiError) {
	evs, aerr := parseEvents(c.body)
	if aerr != nil {
		return nil, aerr
	}
	added := 0
	errInfo := map[string]int{}
	for _, ev := range evs {
		typ, _ := ev["type"].(string)
		task, _ := ev["task"].(string)
		switch {
		case !slices.Contains(eventTypes, typ):
			errInfo[fmt.Sprintf("Invalid event type %q", typ)]++
			continue
		case task == "":
			errInfo["Event must have a 'task' field"]++
			continue
		case s.tasks[task] == nil:
			errInfo["Invalid task id"]++
			continue
		}
		ts, ok := toInt64(ev["timestamp"])
		if !ok || ts <= 0 {
			ts = c.now.UnixMilli()
			ev["timestamp"] = ts
		} else {
			ev["timestamp"] = ts
		}
		if n, ok := toInt64(ev["iter"]); ok {
			ev["iter"] = n
		}
		s.eventSeq++
		s.events[task] = append(s.events[task], storedEvent{Seq: s.eventSeq, TS: ts, Doc: ev, Task: task})
		added++
	}
	if added > 0 {
		s.changed()
	}
	errs := 0
	for _, n := range errInfo {
		errs += n
	}
	return map[string]any{"added": added, "errors": errs, "errors_info": errInfo}, nil
}

func eventOut(e storedEvent) map[string]any {
	out := deepCopy(e.Doc).(map[string]any)
	out["@timestamp"] = fmtTime(timeFromMillis(e.TS))
	return out
}

// eventsGetTaskLog pages through a task's log events by timestamp (ties in
// arrival order). navigate_earlier (default true) returns the batch_size
// events just before from_timestamp (or the newest ones), newest first;
// navigate_earlier=false returns the ones just after it, oldest first.
func (s *Server) eventsGetTaskLog(c *call) (any, *apiError) {
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	if _, err := s.task(id); err != nil {
		return nil, err
	}
	batch := 500
	if _, err := c.field("batch_size", &batch, false); err != nil {
		return nil, err
	}
	if batch <= 0 {
		batch = 500
	}
	earlier := true
	if _, err := c.field("navigate_earlier", &earlier, false); err != nil {
		return nil, err
	}
	var from int64
	hasFrom, err := c.field("from_timestamp", &from, false)
	if err != nil {
		return nil, err
	}
	var logs []storedEvent
	for _, e := range s.events[id] {
		if e.Doc["type"] == "log" {
			logs = append(logs, e)
		}
	}
	sort.SliceStable(logs, func(i, j int) bool { return logs[i].TS < logs[j].TS })
	var sel []storedEvent
	if earlier {
		for i := len(logs) - 1; i >= 0 && len(sel) < batch; i-- {
			if !hasFrom || logs[i].TS < from {
				sel = append(sel, logs[i])
			}
		}
	} else {
		for i := 0; i < len(logs) && len(sel) < batch; i++ {
			if !hasFrom || logs[i].TS > from {
				sel = append(sel, logs[i])
			}
		}
	}
	out := make([]any, len(sel))
	for i, e := range sel {
		out[i] = eventOut(e)
	}
	return map[string]any{"events": out, "returned": len(out), "total": len(logs)}, nil
}

// eventToAPI converts a stored event for TaskLog.
func eventToAPI(e storedEvent) api.Event {
	var ev api.Event
	b, _ := json.Marshal(e.Doc)
	_ = json.Unmarshal(b, &ev)
	return ev
}

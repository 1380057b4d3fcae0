package apischema

// LogLevels are the levels a log event may carry.
var LogLevels = []string{"notset", "debug", "verbose", "info", "warn", "warning", "error", "fatal", "critical"}

func init() {
	// One line of events.add_batch is any event kind (scalar, vector,
	// image, plot or log); only the log event is written down, because it is
	// the only kind this project sends.
	logEvent := obj(props{
		"type": str(), "task": str(), "timestamp": number(), "level": strEnum(LogLevels...), "worker": str(),
		"msg": str(),
	}, "task", "type")
	add(
		&Endpoint{Name: "events.add_batch", JSONLines: true, Revisions: []Revision{
			{Since: "2.1"},
			{Since: "2.22", Request: logEvent,
				Response: obj(props{"added": integer(), "errors": integer(), "errors_info": anyObject()})},
		}},
		&Endpoint{Name: "events.get_task_log", Revisions: []Revision{
			{Since: "1.5"},
			{Since: "1.7"},
			{Since: "2.9", Request: obj(props{
				"task": str(), "batch_size": integer(), "navigate_earlier": boolean(), "from_timestamp": number(),
				"order": strEnum("asc", "desc"),
			}, "task")},
			{Since: "2.30", Response: obj(props{"events": arr(anyObject()), "returned": integer(), "total": number()})},
		}},
	)
}

package apischema

// queue is the queue document of queues.get_all and queues.get_by_id.
func queue() *Type {
	return obj(props{
		"id": str(), "name": str(), "display_name": str(), "user": str(), "company": str(), "created": date(),
		"tags": strs(), "system_tags": strs(),
		"entries":  arr(obj(props{"task": str(), "added": date()})),
		"metadata": mapOf(obj(props{"key": str(), "type": str(), "value": str()})),
	})
}

func init() {
	getAll24 := obj(props{
		"id": strs(), "name": str(), "tags": strs(), "system_tags": strs(), "only_fields": strs(),
		"order_by": strs(), "page": integer(), "page_size": integer(), "search_text": str(),
	})
	getAll215 := getAll24.with(props{"scroll_id": str(), "refresh_scroll": boolean(), "size": integer()})
	getAll220 := getAll215.with(props{"max_task_entries": integer()})
	add(
		&Endpoint{Name: "queues.create", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"name": str(), "tags": strs(), "system_tags": strs()}, "name")},
			{Since: "2.13"},
			{Since: "2.31", Response: obj(props{"id": str()})},
		}},
		&Endpoint{Name: "queues.get_all", Revisions: []Revision{
			{Since: "2.4", Request: getAll24},
			{Since: "2.15", Request: getAll215},
			{Since: "2.20", Request: getAll220},
			{Since: "2.21", Request: getAll220.with(props{"search_hidden": boolean()}),
				Response: obj(props{"queues": arr(queue()), "scroll_id": str()})},
		}},
		&Endpoint{Name: "queues.get_by_id", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"queue": str()}, "queue")},
			{Since: "2.20", Response: obj(props{"queue": queue()})},
		}},
		&Endpoint{Name: "queues.get_default", Revisions: []Revision{
			{Since: "2.4", Request: obj(nil), Response: obj(props{"id": str(), "name": str()})},
		}},
		&Endpoint{Name: "queues.get_next_task", Revisions: []Revision{
			{Since: "2.4"},
			{Since: "2.14", Request: obj(props{"queue": str(), "get_task_info": boolean()}, "queue")},
			{Since: "2.21", Response: obj(props{
				"entry":     obj(props{"task": str(), "added": date()}),
				"task_info": obj(props{"company": str(), "user": str()}),
			})},
		}},
		&Endpoint{Name: "queues.add_task", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"queue": str(), "task": str()}, "queue", "task")},
			{Since: "2.31", Response: obj(props{"added": zeroOrOne()})},
		}},
		&Endpoint{Name: "queues.remove_task", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"queue": str(), "task": str()}, "queue", "task")},
			{Since: "2.31", Response: obj(props{"removed": zeroOrOne()})},
		}},
	)
}

package apischema

// project is one element of projects.get_all (2.15).
func project() *Type {
	counts := obj(props{
		"status_count": obj(props{
			"created": integer(), "queued": integer(), "in_progress": integer(), "stopped": integer(),
			"published": integer(), "closed": integer(), "failed": integer(), "completed": integer(),
			"unknown": integer(),
		}),
		"total_runtime": integer(), "total_tasks": integer(), "completed_tasks_24h": integer(),
		"last_task_run": integer(),
	})
	return obj(props{
		"id": str(), "name": str(), "basename": str(), "description": str(), "user": str(), "company": str(),
		"created": date(), "last_update": date(), "tags": strs(), "system_tags": strs(),
		"default_output_destination": str(), "hidden": boolean(),
		"stats": obj(props{"active": counts, "archived": counts,
			"datasets": obj(props{"count": integer(), "tags": strs()})}),
		"dataset_stats": obj(props{"file_count": integer(), "total_size": integer()}),
		"sub_projects":  arr(obj(props{"id": str(), "name": str()})),
		"own_tasks":     integer(), "own_models": integer(), "own_datasets": integer(),
	})
}

func init() {
	getAll21 := obj(props{
		"id": strs(), "name": str(), "basename": str(), "description": str(), "tags": strs(),
		"system_tags": strs(), "only_fields": strs(), "order_by": strs(), "page": integer(),
		"page_size": integer(), "search_text": str(), "_any_": getAllFilter(), "_all_": getAllFilter(),
	})
	getAll213 := getAll21.with(props{"shallow_search": boolean()})
	add(
		&Endpoint{Name: "projects.get_all", Revisions: []Revision{
			{Since: "2.1", Request: getAll21},
			{Since: "2.13", Request: getAll213},
			{Since: "2.14", Request: getAll213.with(props{"search_hidden": boolean()})},
			{Since: "2.15", Response: obj(props{"projects": arr(project()), "scroll_id": str()})},
		}},
		&Endpoint{Name: "projects.create", Revisions: []Revision{
			{Since: "2.1", Response: obj(props{"id": str()})},
		}},
	)
}

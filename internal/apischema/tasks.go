package apischema

// Task enums: a task's status and type.
var (
	TaskStatuses = []string{"created", "queued", "in_progress", "stopped", "published", "publishing", "closed",
		"failed", "completed", "unknown"}
	TaskTypes = []string{"training", "testing", "inference", "data_processing", "application", "monitor",
		"controller", "optimizer", "service", "qc", "custom"}
)

// script is task.script: where the code is and how to start it.
func script() *Type {
	return obj(props{
		"binary": str(), "repository": str(), "tag": str(), "branch": str(), "version_num": str(),
		"entry_point": str(), "working_dir": str(), "diff": str(),
		"requirements": anyObject(), // free keys: pip, conda, org_pip...
	})
}

// execution is task.execution.
func execution() *Type {
	artifact := obj(props{
		"key": str(), "type": str(), "mode": strEnum("input", "output"), "uri": str(), "hash": str(),
		"content_size": integer(), "timestamp": integer(),
		"type_data":    obj(props{"preview": str(), "content_type": str(), "data_hash": str()}),
		"display_data": arr(arr(str())),
	}, "key", "type")
	return obj(props{
		"queue": str(), "parameters": anyObject(), "model": str(), "model_desc": anyObject(),
		"model_labels": mapOf(integer()), "framework": str(), "docker_cmd": str(), "artifacts": arr(artifact),
	})
}

// hyperparams is section -> name -> parameter.
func hyperparams() *Type {
	return mapOf(mapOf(obj(props{"section": str(), "name": str(), "value": str(), "type": str(), "description": str()})))
}

// configuration is name -> configuration item.
func configuration() *Type {
	return mapOf(obj(props{"name": str(), "value": str(), "type": str(), "description": str()}))
}

// models is task.models: the input and output models by name.
func models() *Type {
	item := obj(props{"name": str(), "model": str()}, "name", "model")
	return obj(props{"input": arr(item), "output": arr(item)})
}

// container is task.container: image, arguments, setup_shell_script...
func container() *Type { return mapOf(str()) }

// task is the task document of tasks.get_by_id and tasks.get_all.
func task() *Type {
	metric := obj(props{
		"metric": str(), "variant": str(), "value": number(), "min_value": number(),
		"min_value_iteration": integer(), "max_value": number(), "max_value_iteration": integer(),
		"first_value": number(), "first_value_iteration": integer(), "mean_value": number(),
		"count": integer(), "x_axis_label": str(),
	})
	const model = "the real server's Task document has this field and returns it from tasks.get_by_id and tasks.get_all, though the schema does not define it"
	return obj(props{
		"id": str(), "name": str(), "user": str(), "company": str(),
		"type":   strEnum(TaskTypes...),
		"status": strEnum(TaskStatuses...), "status_changed": date(), "status_message": str(), "status_reason": str(),
		"comment": str(), "created": date(), "started": date(), "completed": date(), "published": date(),
		"active_duration": integer(), "parent": str(), "project": str(),
		"output":      obj(props{"destination": str(), "model": str(), "result": str(), "error": str()}),
		"execution":   execution(),
		"container":   container(),
		"models":      models(),
		"script":      script(),
		"tags":        strs(),
		"system_tags": strs(),
		"last_worker": str(), "last_worker_report": date(), "last_update": date(), "last_change": date(),
		"last_iteration": integer(),
		"last_metrics":   mapOf(mapOf(metric)),
		"hyperparams":    hyperparams(),
		"configuration":  configuration(),
		"runtime":        anyObject(),
		// Not in the schema; written down because the real server sends them.
		"enqueue_status":  extra(strEnum(TaskStatuses...), model+" (the status to return to on dequeue)"),
		"last_changed_by": extra(str(), model+" (the user id of the last change)"),
	})
}

// taskFields are the settable task fields of tasks.create (2.13 on).
func taskFields() props {
	return props{
		"name": str(), "type": strEnum(TaskTypes...), "comment": str(), "parent": str(), "project": str(),
		"tags": strs(), "system_tags": strs(), "output_dest": str(), "execution": execution(), "script": script(),
		"hyperparams": hyperparams(), "configuration": configuration(), "container": container(),
		"models": models(),
	}
}

// taskFields21 are those of the 2.1 revision (before container and models).
func taskFields21() props {
	p := taskFields()
	delete(p, "container")
	delete(p, "models")
	return p
}

// statusChange is the body of tasks.started, stopped, failed, stop...
func statusChange(extra props) *Type {
	return obj(props{"task": str(), "status_reason": str(), "status_message": str(), "force": boolean()}, "task").with(extra)
}

// updated is the answer of task updates: {updated: 0|1, fields: {...}}.
func updated(extra props) *Type {
	return obj(props{"updated": zeroOrOne(), "fields": anyObject()}).with(extra)
}

// getAllFilter is the shared pattern filter of get_all requests (_any_,
// _all_).
func getAllFilter() *Type {
	return obj(props{"pattern": str(), "datetime": str(), "fields": strs()})
}

func init() {
	edit := obj(taskFields(), "task").with(props{"task": str(), "force": boolean(), "runtime": anyObject()})
	getAll := obj(props{
		"id": strs(), "name": str(), "user": strs(), "project": strs(), "parent": str(),
		"status": arr(strEnum(TaskStatuses...)), "type": strs(), "tags": strs(), "system_tags": strs(),
		"status_changed": strs(), "only_fields": strs(), "order_by": strs(), "page": integer(), "page_size": integer(),
		"search_text": str(), "_any_": getAllFilter(), "_all_": getAllFilter(), "search_hidden": boolean(),
	})
	add(
		&Endpoint{Name: "tasks.get_by_id", Revisions: []Revision{
			{Since: "2.1", Request: obj(props{"task": str()}, "task"), Response: obj(props{"task": task()})},
		}},
		&Endpoint{Name: "tasks.get_all", Revisions: []Revision{
			{Since: "2.1"},
			{Since: "2.14", Request: getAll},
			{Since: "2.15"},
			{Since: "2.26", Response: obj(props{"tasks": arr(task()), "scroll_id": str()})},
		}},
		&Endpoint{Name: "tasks.create", Revisions: []Revision{
			{Since: "2.1", Request: obj(taskFields21(), "name", "type")},
			{Since: "2.13", Request: obj(taskFields(), "name", "type"), Response: obj(props{"id": str()})},
		}},
		&Endpoint{Name: "tasks.edit", Revisions: []Revision{
			{Since: "2.1", Request: obj(taskFields21(), "task").with(props{"task": str(), "force": boolean()})},
			{Since: "2.13", Request: edit, Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.enqueue", Revisions: []Revision{
			{Since: "1.5", Request: obj(props{"task": str(), "queue": str(), "status_reason": str(), "status_message": str()}, "task")},
			{Since: "2.19", Request: obj(props{"task": str(), "queue": str(), "queue_name": str(),
				"status_reason": str(), "status_message": str()}, "task")},
			{Since: "2.22"},
			{Since: "2.31", Response: updated(props{"queued": zeroOrOne(), "queue_watched": boolean()})},
		}},
		&Endpoint{Name: "tasks.dequeue", Revisions: []Revision{
			{Since: "1.5", Request: obj(props{"task": str(), "status_reason": str(), "status_message": str()}, "task")},
			{Since: "2.25", Request: obj(props{"task": str(), "status_reason": str(), "status_message": str(),
				"remove_from_all_queues": boolean()}, "task")},
			{Since: "2.26",
				Request: obj(props{"task": str(), "status_reason": str(), "status_message": str(),
					"remove_from_all_queues": boolean(), "new_status": str()}, "task"),
				Response: updated(props{"dequeued": zeroOrOne()})},
		}},
		&Endpoint{Name: "tasks.started", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(nil), Response: updated(props{"started": zeroOrOne()})},
		}},
		&Endpoint{Name: "tasks.stopped", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(nil), Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.failed", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(nil), Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.completed", Revisions: []Revision{
			{Since: "2.2", Request: statusChange(nil)},
			{Since: "2.20", Request: statusChange(props{"publish": boolean()}),
				Response: updated(props{"published": zeroOrOne()})},
		}},
		&Endpoint{Name: "tasks.close", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(nil), Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.publish", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(props{"publish_model": boolean()}), Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.ping", Revisions: []Revision{
			{Since: "2.1", Request: obj(props{"task": str()}, "task"), Response: obj(nil)},
		}},
		&Endpoint{Name: "tasks.stop", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(nil)},
			{Since: "2.30", Request: statusChange(props{"include_pipeline_steps": boolean()}), Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.reset", Revisions: []Revision{
			{Since: "2.1", Request: statusChange(props{"clear_all": boolean()})},
			{Since: "2.13"},
			{Since: "2.21", Response: updated(props{
				"dequeued": anyObject(), "events": anyObject(), "deleted_models": integer(),
				"urls": obj(props{"model_urls": strs(), "event_urls": strs(), "artifact_urls": strs()}),
			})},
		}},
		&Endpoint{Name: "tasks.clone", Revisions: []Revision{
			{Since: "2.5", Request: obj(props{
				"task": str(), "new_task_name": str(), "new_task_comment": str(), "new_task_tags": strs(),
				"new_task_system_tags": strs(), "new_task_parent": str(), "new_task_project": str(),
				"new_task_hyperparams": hyperparams(), "new_task_configuration": configuration(),
				"execution_overrides": execution(), "validate_references": boolean(),
			}, "task")},
			{Since: "2.12"},
			{Since: "2.13", Response: obj(props{"id": str(), "new_project": obj(props{"id": str(), "name": str()})})},
		}},
		&Endpoint{Name: "tasks.set_requirements", Revisions: []Revision{
			{Since: "2.1", Request: obj(props{"task": str(), "requirements": anyObject()}, "task", "requirements"),
				Response: updated(nil)},
		}},
		&Endpoint{Name: "tasks.get_hyper_params", Revisions: []Revision{
			{Since: "2.9", Request: obj(props{"tasks": strs()}, "tasks"), Response: obj(props{"params": arr(obj(props{
				"task":        str(),
				"hyperparams": arr(obj(props{"section": str(), "name": str(), "value": str(), "type": str(), "description": str()})),
			}))})},
		}},
	)
}

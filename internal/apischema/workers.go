package apischema

// idName is the {id, name} reference the workers service returns.
func idName() *Type { return obj(props{"id": str(), "name": str()}) }

// machineStats is workers.status_report's machine_stats (2.4 on).
func machineStats() *Type {
	nums := func() *Type { return arr(number()) }
	return obj(props{
		"cpu_usage": nums(), "cpu_temperature": nums(), "gpu_usage": nums(), "gpu_temperature": nums(),
		"gpu_memory_free": nums(), "gpu_memory_used": nums(), "memory_used": number(), "memory_free": number(),
		"network_tx": number(), "network_rx": number(), "disk_free_home": number(), "disk_free_temp": number(),
		"disk_read": number(), "disk_write": number(),
	})
}

// worker is one element of workers.get_all (2.30).
func worker() *Type {
	queueEntry := obj(props{"id": str(), "name": str(), "display_name": str(), "next_task": idName(), "num_tasks": integer()})
	return obj(props{
		"id": str(), "user": idName(), "company": idName(), "ip": str(), "key": str(),
		"register_time": date(), "last_activity_time": date(), "last_report_time": date(),
		"task":    obj(props{"id": str(), "name": str(), "running_time": integer(), "last_iteration": integer()}),
		"project": idName(),
		"queue":   queueEntry,
		"queues":  arr(queueEntry),
		"tags":    strs(), "system_tags": strs(),
	})
}

func init() {
	// The schema leaves the answers of register, unregister and
	// status_report free (an object with no properties); the real server
	// sends {} and the table holds the emulator to that.
	add(
		&Endpoint{Name: "workers.register", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"worker": str(), "timeout": integer(), "queues": strs(), "tags": strs()}, "worker")},
			{Since: "2.22", Response: obj(nil)},
			{Since: "2.34"},
		}},
		&Endpoint{Name: "workers.unregister", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"worker": str()}, "worker"), Response: obj(nil)},
		}},
		&Endpoint{Name: "workers.status_report", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{
				"worker": str(), "timestamp": integer(), "machine_stats": machineStats(), "task": str(),
				"queue": str(), "queues": strs(), "tags": strs(),
			}, "worker", "timestamp")},
			{Since: "2.22", Response: obj(nil)},
		}},
		&Endpoint{Name: "workers.get_all", Revisions: []Revision{
			{Since: "2.4", Request: obj(props{"last_seen": integer()})},
			{Since: "2.20", Request: obj(props{"last_seen": integer(), "tags": strs()})},
			{Since: "2.22", Request: obj(props{"last_seen": integer(), "tags": strs(), "system_tags": strs()})},
			{Since: "2.30", Request: obj(props{"last_seen": integer(), "tags": strs(), "system_tags": strs(), "worker_pattern": str()}),
				Response: obj(props{"workers": arr(worker())})},
		}},
	)
}

package apischema

// Envelope is every answer's wrapper, as clearml-server's APICall writes it
// (service_repo/apicall.py, not the services schema): meta describes the
// call, data is the endpoint's answer (checked against the endpoint's
// Response). requested_version and actual_version are strings for clients
// at 2.1 and later; actual_version is null when no endpoint revision served
// the call (unknown endpoint, bad path or version); error_stack is null
// unless the server is set to return stacks.
var Envelope = obj(props{
	"meta": obj(props{
		"id":  str(),
		"trx": str(),
		"endpoint": obj(props{"name": str(), "requested_version": str(), "actual_version": nullable(str())},
			"name", "requested_version", "actual_version"),
		"result_code":    integer(),
		"result_subcode": integer(),
		"result_msg":     str(),
		"error_stack":    nullable(str()),
		"error_data":     anyObject(),
	}, "id", "trx", "endpoint", "result_code", "result_subcode", "result_msg", "error_stack", "error_data"),
	"data": anyObject(),
}, "meta", "data")

package apischema

func init() {
	add(&Endpoint{Name: "auth.login", Revisions: []Revision{
		// expiration_sec usually comes as a query parameter.
		{Since: "2.1", Request: obj(props{"expiration_sec": integer()}), Response: obj(props{"token": str()})},
	}})
}

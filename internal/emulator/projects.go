package emulator

func (s *Server) projectsCreate(c *call) (any, *apiError) {
	name, err := c.str("name", true)
	if err != nil {
		return nil, err
	}
	desc, err := c.str("description", false)
	if err != nil {
		return nil, err
	}
	for _, id := range s.projOrder {
		if getStr(s.projects[id], "name") == name {
			return nil, errNotUnique("project", name)
		}
	}
	id := newID()
	s.projects[id] = map[string]any{"id": id, "name": name, "description": desc, "created": fmtTime(c.now),
		"user": c.identity.User, "company": c.identity.Company, "basename": name}
	s.projOrder = append(s.projOrder, id)
	s.changed()
	return map[string]any{"id": id}, nil
}

func (s *Server) projectsGetAll(c *call) (any, *apiError) {
	g, err := c.getAllArgs()
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, id := range s.projOrder {
		p := s.projects[id]
		if g.skip(id, getStr(p, "name"), false) {
			continue
		}
		out = append(out, project(p, g.fields))
	}
	return map[string]any{"projects": out}, nil
}

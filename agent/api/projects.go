package api

import "context"

// GetAllProjectsRequest is projects.get_all; Name is a regular expression on
// the server.
type GetAllProjectsRequest struct {
	Name         string   `json:"name,omitempty"`
	ID           []string `json:"id,omitempty"`
	OnlyFields   []string `json:"only_fields,omitempty"`
	SearchHidden bool     `json:"search_hidden,omitempty"`
}

// GetAllProjects calls projects.get_all.
func (c *Client) GetAllProjects(ctx context.Context, req GetAllProjectsRequest) ([]Project, error) {
	var out struct {
		Projects []Project `json:"projects"`
	}
	if err := c.Call(ctx, "projects.get_all", req, &out); err != nil {
		return nil, err
	}
	return out.Projects, nil
}

package api

import (
	"encoding/json"
	"testing"
)

// A child handed the daemon's session token calls at once, without
// auth.login; once the server rejects the token it logs in with its keys.
func TestSessionTokenSkipsLogin(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	parent := f.client(t, nil)
	tok, err := parent.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	child := f.client(t, func(c *Config) { c.SessionToken = tok })
	if err := child.Ping(t.Context(), "t1"); err != nil {
		t.Fatal(err)
	}
	if n := f.loginCount(); n != 1 {
		t.Errorf("auth.login calls = %d, want 1 (the parent's only)", n)
	}
	if got, _ := child.Token(t.Context()); got != tok {
		t.Errorf("child token = %q, want the handed one", got)
	}

	f.revokeAll()
	if err := child.Ping(t.Context(), "t1"); err != nil {
		t.Fatalf("after the token was revoked: %v (want a login with the keys, then success)", err)
	}
	if n := f.loginCount(); n != 2 {
		t.Errorf("auth.login calls = %d, want 2", n)
	}
}

// An empty pip key is not a missing one: the task asks for nothing.
func TestRequirementsHasPip(t *testing.T) {
	for in, want := range map[string]bool{`{"pip":""}`: true, `{"pip":"six"}`: true, `{"org_pip":"x"}`: false, `{}`: false} {
		var r Requirements
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatal(err)
		}
		if r.HasPip != want {
			t.Errorf("%s: HasPip = %v, want %v", in, r.HasPip, want)
		}
	}
}

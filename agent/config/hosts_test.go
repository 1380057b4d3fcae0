package config

import "testing"

func TestDeriveHosts(t *testing.T) {
	cases := []struct {
		web, api string
		want     Hosts
	}{
		{"https://app.clear.ml", "", Hosts{Web: "https://app.clear.ml", API: "https://api.clear.ml", Files: "https://files.clear.ml"}},
		{"", "https://api.example.com/", Hosts{Web: "https://app.example.com", API: "https://api.example.com", Files: "https://files.example.com"}},
		{"https://demoapp.demo.clear.ml", "", Hosts{Web: "https://demoapp.demo.clear.ml", API: "https://demoapi.demo.clear.ml", Files: "https://demofiles.demo.clear.ml"}},
		{"http://10.0.0.5:8080", "", Hosts{Web: "http://10.0.0.5:8080", API: "http://10.0.0.5:8008", Files: "http://10.0.0.5:8081"}},
		{"", "http://h:8008", Hosts{Web: "http://h:8080", API: "http://h:8008", Files: "http://h:8081"}},
	}
	for _, c := range cases {
		got, err := DeriveHosts(c.web, c.api, "")
		if err != nil || got != c.want {
			t.Errorf("DeriveHosts(%q, %q) = %+v, %v; want %+v", c.web, c.api, got, err, c.want)
		}
	}
	if _, err := DeriveHosts("app.clear.ml", "", ""); err == nil {
		t.Errorf("want an error for a host without scheme")
	}
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Hosts are the three server URLs of a ClearML deployment.
type Hosts struct{ Web, API, Files string }

// DeriveHosts fills in missing hosts the way the Python wizard does:
// app. <-> api. <-> files. (and demoapp./demoapi./demofiles.), ports 8080 <-> 8008 <-> 8081.
func DeriveHosts(web, api, files string) (Hosts, error) {
	h := Hosts{Web: strings.TrimRight(web, "/"), API: strings.TrimRight(api, "/"), Files: strings.TrimRight(files, "/")}
	base, kind := h.Web, "web"
	if base == "" {
		base, kind = h.API, "api"
	}
	if base == "" {
		return h, fmt.Errorf("no host given; enter e.g. https://app.clear.ml")
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return h, fmt.Errorf("host %q: not an http(s) URL; use e.g. https://app.clear.ml or http://10.0.0.5:8080", base)
	}
	variant := func(to string) string {
		v := *u
		host, port := v.Hostname(), v.Port()
		prefixes := map[string][]string{"web": {"app.", "demoapp."}, "api": {"api.", "demoapi."}, "files": {"files.", "demofiles."}}
		for i, from := range prefixes[kind] {
			if strings.HasPrefix(host, from) {
				host = prefixes[to][i] + strings.TrimPrefix(host, from)
				break
			}
		}
		ports := map[string]string{"web": "8080", "api": "8008", "files": "8081"}
		if port == ports[kind] {
			port = ports[to]
		}
		if port != "" {
			v.Host = net.JoinHostPort(host, port)
		} else {
			v.Host = host
		}
		return strings.TrimRight(v.String(), "/")
	}
	if h.Web == "" {
		h.Web = variant("web")
	}
	if h.API == "" {
		h.API = variant("api")
	}
	if h.Files == "" {
		h.Files = variant("files")
	}
	return h, nil
}

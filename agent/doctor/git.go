package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// GitOptions configures GitHostCheck.
type GitOptions struct {
	// Host is agent.git_host (CLEARML_AGENT_GIT_HOST): a host name, with
	// an optional scheme, user, port or path, as agent/repo scopes git
	// credentials to it.
	Host string
	// ForceSSH and SSHPort are agent.force_git_ssh_protocol and
	// agent.force_git_ssh_port: clones go over ssh (to SSHPort, default 22).
	ForceSSH bool
	SSHPort  int
	// Dial connects (nil = net.Dialer); DialTimeout bounds each try
	// (default 5 s).
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	DialTimeout time.Duration
}

// gitTarget is one port a clone may use.
type gitTarget struct {
	proto string // https, http, ssh
	port  string
}

// gitTargets works out what to dial: an explicit port or scheme says it;
// else https (443) and ssh (22), or ssh alone when clones are forced onto it.
func gitTargets(o GitOptions) (host string, targets []gitTarget, err error) {
	s := strings.TrimSpace(o.Host)
	scheme := ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, s = strings.ToLower(s[:i]), s[i+3:]
	}
	if i := strings.Index(s, "/"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return "", nil, fmt.Errorf("agent.git_host %q names no host", o.Host)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", nil, fmt.Errorf("agent.git_host %q: port %q is not a number from 1 to 65535", o.Host, port)
		}
	}
	sshPort := "22"
	if o.SSHPort > 0 {
		sshPort = strconv.Itoa(o.SSHPort)
	}
	switch {
	case o.ForceSSH:
		return host, []gitTarget{{"ssh", sshPort}}, nil
	case scheme == "https":
		return host, []gitTarget{{"https", or(port, "443")}}, nil
	case scheme == "http":
		return host, []gitTarget{{"http", or(port, "80")}}, nil
	case scheme == "ssh" || scheme == "git+ssh":
		return host, []gitTarget{{"ssh", or(port, sshPort)}}, nil
	case port != "":
		return host, []gitTarget{{"git", port}}, nil
	}
	return host, []gitTarget{{"https", "443"}, {"ssh", sshPort}}, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// GitHostCheck returns "git host": agent.git_host accepts TCP connections
// on the ports clones use (skipped when it is not set). It dials only: it
// does not log in.
func GitHostCheck(o GitOptions) Check {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Dial == nil {
		o.Dial = (&net.Dialer{}).DialContext
	}
	return Check{Name: "git host", Timeout: 2*o.DialTimeout + 5*time.Second, Run: func(ctx context.Context) Result { return gitResult(ctx, o) }}
}

func gitResult(ctx context.Context, o GitOptions) Result {
	if strings.TrimSpace(o.Host) == "" {
		return Result{Status: Skip, Detail: "agent.git_host is not set"}
	}
	host, targets, err := gitTargets(o)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: "set agent.git_host to a host name such as github.com or git.example.com:2222"}
	}
	var ok, bad []string
	for _, t := range targets {
		addr := net.JoinHostPort(host, t.port)
		dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		c, err := o.Dial(dctx, "tcp", addr)
		cancel()
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s %s: %s", t.proto, addr, dialReason(err)))
			continue
		}
		c.Close()
		ok = append(ok, fmt.Sprintf("%s %s", t.proto, addr))
	}
	fix := fmt.Sprintf("check DNS, routes and firewalls from this machine to %s, or fix agent.git_host (CLEARML_AGENT_GIT_HOST)", host)
	switch {
	case len(bad) == 0:
		return Result{Status: OK, Detail: strings.Join(ok, ", ") + " reachable"}
	case len(ok) == 0:
		return Result{Status: Fail, Detail: "cannot connect to " + strings.Join(bad, "; "), Fix: fix}
	}
	return Result{Status: Warn, Detail: fmt.Sprintf("%s reachable, but not %s", strings.Join(ok, ", "), strings.Join(bad, "; ")),
		Fix: "repositories cloned that way will fail: " + fix}
}

// dialReason is the cause of a failed dial ("connection refused").
func dialReason(err error) string {
	if dns := new(net.DNSError); errors.As(err, &dns) {
		if dns.IsNotFound {
			return "no such host"
		}
		return dns.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "i/o timeout") {
		return "no answer in time"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

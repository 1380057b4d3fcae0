package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Server is what the server checks need from the API; *api.Client has it.
type Server interface {
	Login(ctx context.Context) (api.ServerInfo, error)
	GetQueue(ctx context.Context, id string) (*api.Queue, error)
	QueuesByName(ctx context.Context, name string) ([]api.Queue, error)
	GetAllQueues(ctx context.Context, req api.GetAllQueuesRequest) ([]api.Queue, error)
	GetDefaultQueue(ctx context.Context) (id, name string, err error)
}

// ServerOptions configures ServerChecks.
type ServerOptions struct {
	// URL is api.api_server (CLEARML_API_HOST).
	URL string
	// VerifyCertificate is api.verify_certificate.
	VerifyCertificate bool
	// HTTP, when set, makes the plain GET (tests); nil = a client with
	// VerifyCertificate and no redirects.
	HTTP *http.Client
	// API logs in and looks the queues up; when nil, APIErr says why there
	// is none (missing credentials) and the credential checks fail with it.
	API    Server
	APIErr error
	// Queues are the daemon's --queue values (names or ids); empty = the
	// server's default queue, as the daemon resolves it.
	Queues      []string
	CreateQueue bool
	// Now is the local clock (nil = time.Now).
	Now func() time.Time
	// SkewWarn and SkewFail are the clock-skew limits (default 30 s, 5 min).
	SkewWarn, SkewFail time.Duration
}

// credentialsFix names every place credentials come from.
const credentialsFix = "set api.credentials.access_key and secret_key in clearml.conf (or CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY) " +
	"to a key pair from the web UI (Settings > Workspace), or run `clearml-agent init`"

const hostFix = "check api.api_server in clearml.conf (or CLEARML_API_HOST), that the server runs, and that no firewall or proxy blocks the way"

// ServerChecks returns the checks that need the ClearML server, in order:
// server (a plain GET of URL answers at all), credentials (auth.login),
// api version (from the token), queues, clock (the Date header of the GET).
// They share the GET and the login: a later check is skipped when an
// earlier one it needs failed.
func ServerChecks(o ServerOptions) []Check {
	s := &serverState{o: o}
	if s.o.Now == nil {
		s.o.Now = time.Now
	}
	if s.o.SkewWarn <= 0 {
		s.o.SkewWarn = 30 * time.Second
	}
	if s.o.SkewFail <= 0 {
		s.o.SkewFail = 5 * time.Minute
	}
	return []Check{
		{Name: "server", Timeout: 15 * time.Second, Run: s.server},
		{Name: "credentials", Timeout: 30 * time.Second, Run: s.credentials},
		{Name: "api version", Timeout: 30 * time.Second, Run: s.version},
		{Name: "queues", Timeout: 30 * time.Second, Run: s.queues},
		{Name: "clock", Timeout: 15 * time.Second, Run: s.clock},
	}
}

type serverState struct {
	o ServerOptions

	getOnce    sync.Once
	status     int
	date       string
	sent, took time.Time
	getErr     error

	loginOnce sync.Once
	info      api.ServerInfo
	loginErr  error
}

func (s *serverState) get(ctx context.Context) error {
	s.getOnce.Do(func() {
		c := s.o.HTTP
		if c == nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			if !s.o.VerifyCertificate {
				tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
			}
			c = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.o.URL, nil)
		if err != nil {
			s.getErr = err
			return
		}
		s.sent = s.o.Now()
		res, err := c.Do(req)
		s.took = s.o.Now()
		if err != nil {
			s.getErr = err
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		res.Body.Close()
		s.status, s.date = res.StatusCode, res.Header.Get("Date")
	})
	return s.getErr
}

func (s *serverState) login(ctx context.Context) error {
	s.loginOnce.Do(func() {
		if s.o.API == nil {
			s.loginErr = s.o.APIErr
			if s.loginErr == nil {
				s.loginErr = errors.New("no API client")
			}
			return
		}
		s.info, s.loginErr = s.o.API.Login(ctx)
	})
	return s.loginErr
}

func (s *serverState) server(ctx context.Context) Result {
	if s.o.URL == "" {
		return Result{Status: Fail, Detail: "no API server configured", Fix: "set api.api_server in clearml.conf or CLEARML_API_HOST (e.g. http://clearml-server:8008)"}
	}
	if err := s.get(ctx); err != nil {
		fix := hostFix
		if errors.As(err, new(*tls.CertificateVerificationError)) || strings.Contains(err.Error(), "x509:") {
			fix = "install the server's CA certificate on this machine, or set api.verify_certificate: false"
		}
		return Result{Status: Fail, Detail: fmt.Sprintf("%s does not answer: %s", s.o.URL, netReason(err)), Fix: fix}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s answers (HTTP %d)", s.o.URL, s.status)}
}

// netReason shortens a transport error to its cause ("dial tcp ...:
// connect: connection refused").
func netReason(err error) string {
	if op := new(net.OpError); errors.As(err, &op) {
		return op.Error()
	}
	if dns := new(net.DNSError); errors.As(err, &dns) {
		return dns.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return oneline.Of(err)
}

func (s *serverState) credentials(ctx context.Context) Result {
	if s.o.API == nil {
		return Result{Status: Fail, Detail: oneline.Of(s.login(ctx)), Fix: credentialsFix}
	}
	if s.get(ctx) != nil {
		return Result{Status: Skip, Detail: "the server does not answer"}
	}
	err := s.login(ctx)
	if err == nil {
		who := s.info.UserName
		if who == "" {
			who = s.info.User
		}
		d := "logged in"
		if who != "" {
			d += " as " + who
		}
		if s.info.CompanyName != "" {
			d += " (" + s.info.CompanyName + ")"
		}
		return Result{Status: OK, Detail: d}
	}
	var le *api.LoginError
	switch {
	case errors.As(err, &le) && le.HTTPStatus == http.StatusOK:
		return Result{Status: Fail, Detail: fmt.Sprintf("%s is not a ClearML API server (auth.login gave no token)", s.o.URL),
			Fix: "point api.api_server (CLEARML_API_HOST) at the API server, usually port 8008, not the web UI or file server"}
	case api.IsUnauthorized(err):
		why := ""
		if le != nil && le.ResultMsg != "" {
			why = ": " + oneline.Squash(le.ResultMsg, 200)
		}
		if le != nil && le.TokenMode {
			return Result{Status: Fail, Detail: "the server refused CLEARML_AUTH_TOKEN" + why, Fix: "the token is expired or revoked: unset it, or " + credentialsFix}
		}
		return Result{Status: Fail, Detail: "invalid credentials: the server refused the access key and secret" + why, Fix: credentialsFix}
	}
	// The client's errors end in their own fix ("...; check ...").
	detail, fix, ok := strings.Cut(oneline.Of(err), "; ")
	if !ok {
		fix = hostFix
	}
	return Result{Status: Fail, Detail: "auth.login failed: " + detail, Fix: fix}
}

func (s *serverState) version(ctx context.Context) Result {
	if s.o.API == nil || s.get(ctx) != nil || s.login(ctx) != nil {
		return Result{Status: Skip, Detail: "needs a login"}
	}
	if s.info.ServerVersion == "" && s.info.APIVersion == "" {
		return Result{Status: Warn, Detail: "the server's session token names no server or API version",
			Fix: "check that api.api_server is a ClearML server; calls fall back to API " + api.DefaultAPIVersion}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("ClearML server %s, API %s", orDash(s.info.ServerVersion), orDash(s.info.APIVersion))}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// queueID is what the daemon takes for a queue id rather than a name.
var queueID = regexp.MustCompile(`^[-a-f0-9]{30,}$`)

func (s *serverState) queues(ctx context.Context) Result {
	if s.o.API == nil || s.get(ctx) != nil || s.login(ctx) != nil {
		return Result{Status: Skip, Detail: "needs a login"}
	}
	names := s.o.Queues
	if len(names) == 0 {
		id, name, err := s.o.API.GetDefaultQueue(ctx)
		if err == nil && id != "" {
			return Result{Status: OK, Detail: fmt.Sprintf("default queue %s (%s)", name, id)}
		}
		names = []string{"default"}
	}
	var found, missing, create []string
	for _, n := range names {
		if queueID.MatchString(n) {
			q, err := s.o.API.GetQueue(ctx, n)
			if err == nil {
				found = append(found, q.Name)
				continue
			}
			if !api.IsInvalidQueue(err) {
				return Result{Status: Fail, Detail: fmt.Sprintf("looking up queue %s: %s", n, oneline.Of(err)), Fix: hostFix}
			}
		}
		qs, err := s.o.API.QueuesByName(ctx, n)
		if err != nil {
			return Result{Status: Fail, Detail: fmt.Sprintf("looking up queue %q: %s", n, oneline.Of(err)), Fix: hostFix}
		}
		switch len(qs) {
		case 1:
			found = append(found, qs[0].Name)
		case 0:
			if s.o.CreateQueue {
				create = append(create, n)
			} else {
				missing = append(missing, n)
			}
		default:
			var ids []string
			for _, q := range qs {
				ids = append(ids, q.Name+"="+q.ID)
			}
			return Result{Status: Fail, Detail: fmt.Sprintf("queue name %q matches several queues (%s)", n, strings.Join(ids, ", ")),
				Fix: "pass the queue id instead of its name"}
		}
	}
	if len(missing) > 0 {
		existing := "none"
		if all, err := s.o.API.GetAllQueues(ctx, api.GetAllQueuesRequest{OnlyFields: []string{"id", "name"}}); err == nil && len(all) > 0 {
			var have []string
			for _, q := range all {
				have = append(have, q.Name)
			}
			sort.Strings(have)
			existing = strings.Join(have, ", ")
		}
		return Result{Status: Fail, Detail: fmt.Sprintf("%s not found (existing queues: %s)", quoteList("queue", missing), existing),
			Fix: "create it in the web UI (Orchestration > Queues), pass --create-queue, or fix --queue"}
	}
	var parts []string
	if len(found) > 0 {
		parts = append(parts, strings.Join(found, ", ")+" exist")
	}
	if len(create) > 0 {
		parts = append(parts, strings.Join(create, ", ")+" will be created")
	}
	return Result{Status: OK, Detail: strings.Join(parts, "; ")}
}

func quoteList(what string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return what + " " + q[0]
	}
	return what + "s " + strings.Join(q, ", ")
}

func (s *serverState) clock(ctx context.Context) Result {
	if s.get(ctx) != nil {
		return Result{Status: Skip, Detail: "the server does not answer"}
	}
	if s.date == "" {
		return Result{Status: Skip, Detail: "the server's answer has no Date header"}
	}
	server, err := http.ParseTime(s.date)
	if err != nil {
		return Result{Status: Skip, Detail: fmt.Sprintf("the server's Date header %q does not parse", s.date)}
	}
	// The server stamped its answer between sending and receiving; the
	// header has whole seconds.
	local := s.sent.Add(s.took.Sub(s.sent) / 2)
	skew := server.Sub(local.Truncate(time.Second))
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	d := fmt.Sprintf("server clock %s %s this machine's", abs.Round(time.Second), dir)
	if abs <= 2*time.Second {
		return Result{Status: OK, Detail: "within 2 s of the server's clock"}
	}
	const fix = "enable NTP (timedatectl set-ntp true; systemd-timesyncd or chrony) on this machine and the server"
	switch {
	case abs > s.o.SkewFail:
		return Result{Status: Fail, Detail: d + fmt.Sprintf(" (more than %s: session tokens and task times go wrong)", s.o.SkewFail), Fix: fix}
	case abs > s.o.SkewWarn:
		return Result{Status: Warn, Detail: d + fmt.Sprintf(" (more than %s)", s.o.SkewWarn), Fix: fix}
	}
	return Result{Status: OK, Detail: d}
}

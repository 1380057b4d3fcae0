package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Defaults, following the Python agent where it has one.
const (
	DefaultAPIVersion               = "2.5"
	DefaultMaxRetries               = 8
	DefaultRetryBaseDelay           = 500 * time.Millisecond
	DefaultRetryMaxDelay            = 30 * time.Second
	DefaultTokenExpirationThreshold = 43200 * time.Second // api.auth.token_expiration_threshold_sec

	// Per-attempt limits: (connect, read) = (10, 30) s, (30, 30) s for bodies
	// over bigBody bytes.
	connectTimeout    = 10 * time.Second
	readTimeout       = 30 * time.Second
	bigConnectTimeout = 30 * time.Second
	bigBody           = 15000

	maxResponseBytes = 256 << 20
)

// Config configures a Client. agent/config fills it from clearml.conf and the
// environment; zero values get the defaults named on each field.
type Config struct {
	// Host is api.api_server / CLEARML_API_HOST, e.g. http://clearml:8008.
	Host string
	// AccessKey and SecretKey are api.credentials.* / CLEARML_API_ACCESS_KEY,
	// CLEARML_API_SECRET_KEY. Ignored when Token is set.
	AccessKey, SecretKey string
	// Token is CLEARML_AUTH_TOKEN; it replaces key/secret (auth.login with Bearer).
	Token string
	// SessionToken is a session token that is still good (the daemon hands
	// its own to each task child): calls use it at once, without auth.login,
	// until it nears its expiry or the server rejects it; then the client logs
	// in with the key and secret (or Token).
	SessionToken string
	// DefaultMethod is api.http.default_method / CLEARML_API_DEFAULT_REQ_METHOD:
	// get (default), post or put. events.add_batch is always POST.
	DefaultMethod string
	// VerifyCertificate is api.verify_certificate. Callers must set it (the
	// Python default is true); false skips TLS verification.
	VerifyCertificate bool
	// HTTPClient, when set, is used as is (no TLS or timeout changes).
	HTTPClient *http.Client
	// WorkerHeader is sent as X-ClearML-Worker; default os.Hostname().
	WorkerHeader string
	// AgentVersion is sent as X-ClearML-Agent: api-<AgentVersion>.
	AgentVersion string
	// MaxRetries bounds retries of one call after its first attempt;
	// 0 means DefaultMaxRetries, negative means until ctx ends.
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the capped exponential backoff.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Logger gets Debug lines per call; default discards.
	Logger *slog.Logger
	// APIVersion is the version of typed calls not in the endpoint table;
	// default DefaultAPIVersion ("2.5", as the Python agent's typed requests).
	APIVersion string
	// TokenExpirationThreshold refreshes the token when its remaining validity
	// is below it (capped at half the token's lifetime); default 12 h.
	TokenExpirationThreshold time.Duration
	// OnRetry, when set, is called before each retry sleep, e.g. to tell
	// systemd "server unreachable, retrying".
	OnRetry func(endpoint string, attempt int, err error)
}

// Client calls one ClearML API server. It is safe for concurrent use.
type Client struct {
	host       string
	http       *http.Client
	method     string
	apiVersion string
	baseHeader http.Header
	cfg        Config
	log        *slog.Logger
	now        func() time.Time

	loginMu sync.Mutex // serializes logins
	mu      sync.Mutex // guards the fields below
	token   string
	info    ServerInfo
	refresh time.Time // log in again at or after this time
}

// New validates cfg and returns a Client. It does not contact the server;
// the first call (or Login) logs in.
func New(cfg Config) (*Client, error) {
	host := strings.TrimRight(strings.TrimSpace(cfg.Host), "/")
	if host == "" {
		return nil, errors.New("missing API server: set api.api_server in clearml.conf or CLEARML_API_HOST (e.g. http://clearml-server:8008)")
	}
	u, err := url.Parse(host)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api.api_server %q: want an http(s) URL such as http://clearml-server:8008; fix api.api_server or CLEARML_API_HOST", cfg.Host)
	}
	if cfg.Token == "" && cfg.SessionToken == "" && (cfg.AccessKey == "" || cfg.SecretKey == "") {
		return nil, errors.New("missing credentials: set api.credentials.access_key/secret_key or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY")
	}
	method := strings.ToUpper(strings.TrimSpace(cfg.DefaultMethod))
	switch method {
	case "":
		method = http.MethodGet
	case http.MethodGet, http.MethodPost, http.MethodPut:
	default:
		return nil, fmt.Errorf("api.http.default_method %q: want get, post or put (CLEARML_API_DEFAULT_REQ_METHOD)", cfg.DefaultMethod)
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if v, ok := ParseVersion(cfg.APIVersion); !ok || v[0] == 0 {
		return nil, fmt.Errorf("api version %q: want major.minor such as 2.5", cfg.APIVersion)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.RetryBaseDelay <= 0 {
		cfg.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if cfg.RetryMaxDelay <= 0 {
		cfg.RetryMaxDelay = DefaultRetryMaxDelay
	}
	if cfg.RetryMaxDelay < cfg.RetryBaseDelay {
		cfg.RetryMaxDelay = cfg.RetryBaseDelay
	}
	if cfg.TokenExpirationThreshold <= 0 {
		cfg.TokenExpirationThreshold = DefaultTokenExpirationThreshold
	}
	if cfg.WorkerHeader == "" {
		cfg.WorkerHeader, _ = os.Hostname()
	}
	if cfg.AgentVersion == "" {
		cfg.AgentVersion = "0.0.0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = newHTTPClient(cfg.VerifyCertificate)
	}
	if !cfg.VerifyCertificate && u.Scheme == "https" && cfg.HTTPClient == nil {
		log.Warn("[api] TLS certificate verification is off (api.verify_certificate=false)", "host", host)
	}
	h := http.Header{}
	agent := "api-" + cfg.AgentVersion
	h.Set("X-ClearML-Worker", cfg.WorkerHeader)
	h.Set("X-Trains-Worker", cfg.WorkerHeader)
	h.Set("X-ClearML-Agent", agent)
	h.Set("X-Trains-Agent", agent)
	h.Set("Accept", "application/json")
	c := &Client{
		host:       host,
		http:       hc,
		method:     method,
		apiVersion: cfg.APIVersion,
		baseHeader: h,
		cfg:        cfg,
		log:        log,
		now:        time.Now,
	}
	if cfg.SessionToken != "" {
		c.setToken(cfg.SessionToken)
	}
	return c, nil
}

func newHTTPClient(verify bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !verify} //nolint:gosec // api.verify_certificate=false asks for it
	tr.TLSHandshakeTimeout = connectTimeout
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = readTimeout
	return &http.Client{Transport: tr}
}

// Host returns the API server URL without a trailing slash.
func (c *Client) Host() string { return c.host }

// Call sends req (marshalled to JSON; nil sends {}) to endpoint
// ("service.action") and decodes the answer's data into resp (nil discards
// it). Non-200 result codes come back as *Error.
func (c *Client) Call(ctx context.Context, endpoint string, req, resp any) error {
	var body []byte
	switch r := req.(type) {
	case nil:
		body = []byte("{}")
	case json.RawMessage:
		body = r
	case []byte:
		body = r
	default:
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", endpoint, err)
		}
		body = b
	}
	return c.call(ctx, endpoint, body, "application/json", resp)
}

// call logs in if needed, sends the request with retries, logs in again once
// after a 401 and retries, then decodes data into resp.
func (c *Client) call(ctx context.Context, endpoint string, body []byte, contentType string, resp any) error {
	tok, err := c.currentToken(ctx)
	if err != nil {
		return err
	}
	for relogged := false; ; relogged = true {
		c.mu.Lock()
		server := c.info.APIVersion
		c.mu.Unlock()
		u := c.host + pathFor(endpoint, c.apiVersion, server)
		data, err := c.send(ctx, endpoint, methodFor(endpoint, c.method), u, body, contentType, "Bearer "+tok)
		if err != nil {
			if !relogged && IsCode(err, CodeUnauthorized, -1) {
				c.log.Debug("[api] 401, logging in again", "endpoint", endpoint, "err", err)
				if tok, err = c.relogin(ctx, tok); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if resp == nil || len(data) == 0 || string(data) == "null" {
			return nil
		}
		if err := json.Unmarshal(data, resp); err != nil {
			return fmt.Errorf("%s: decode data: %w (server %s)", endpoint, err, c.host)
		}
		return nil
	}
}

// envelope is every answer of the ClearML API.
type envelope struct {
	Meta struct {
		ID       string `json:"id"`
		Trx      string `json:"trx"`
		Endpoint struct {
			Name             string      `json:"name"`
			RequestedVersion flexVersion `json:"requested_version"`
			ActualVersion    flexVersion `json:"actual_version"`
		} `json:"endpoint"`
		ResultCode    int    `json:"result_code"`
		ResultSubcode int    `json:"result_subcode"`
		ResultMsg     string `json:"result_msg"`
		ErrorStack    string `json:"error_stack"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

// flexVersion accepts a version written as a JSON string or number.
type flexVersion string

func (v *flexVersion) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = flexVersion(s)
		return nil
	}
	*v = flexVersion(b)
	return nil
}

// send performs one logical request with retries and returns the envelope's
// data. auth is the whole Authorization header value.
func (c *Client) send(ctx context.Context, endpoint, method, u string, body []byte, contentType, auth string) (json.RawMessage, error) {
	connect := connectTimeout
	if len(body) > bigBody {
		connect = bigConnectTimeout
	}
	b := &retryAfter{BackOff: NewBackOff(c.cfg.RetryBaseDelay, c.cfg.RetryMaxDelay), max: c.cfg.RetryMaxDelay}
	repeatable := Repeatable(endpoint)
	attempts := 0
	var last error
	data, err := backoff.Retry(ctx, func() (json.RawMessage, error) {
		attempts++
		data, hint, err := c.attempt(ctx, endpoint, method, u, body, contentType, auth, connect+readTimeout, repeatable)
		switch {
		case err == nil:
			return data, nil
		case ctx.Err() != nil:
			return nil, backoff.Permanent(&TransportError{Endpoint: endpoint, URL: u, Attempts: attempts, Err: err, Ctx: ctx.Err(), MaybeDone: !repeatable && !unsent(err)})
		case !retryable(err):
			return nil, backoff.Permanent(err)
		case !repeatable && !unsent(err):
			c.log.Debug("[api] not repeated: the server may have carried the call out", "endpoint", endpoint, "err", err)
			return nil, backoff.Permanent(&TransportError{Endpoint: endpoint, URL: u, Attempts: attempts, Err: err, MaybeDone: true})
		}
		last = err
		if c.cfg.MaxRetries >= 0 && attempts > c.cfg.MaxRetries {
			return nil, backoff.Permanent(&TransportError{Endpoint: endpoint, URL: u, Attempts: attempts, Err: last})
		}
		b.hint = hint
		return nil, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, delay time.Duration) {
		c.log.Debug("[api] retrying", "endpoint", endpoint, "attempt", attempts, "delay", delay, "err", err)
		if c.cfg.OnRetry != nil {
			c.cfg.OnRetry(endpoint, attempts, err)
		}
	}))
	var te *TransportError
	if err != nil && ctx.Err() != nil && !errors.As(err, &te) { // cancelled while waiting to retry
		return nil, &TransportError{Endpoint: endpoint, URL: u, Attempts: attempts, Err: last, Ctx: ctx.Err()}
	}
	return data, err
}

// retryable: connection-level failures and 429/502/503/504/509 answers;
// endpoints that are not Repeatable retry only those that are also unsent.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.HTTPStatus {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, 509:
			return true
		}
		return false
	}
	var de *decodeError
	return !errors.As(err, &de)
}

// unsent reports a failure that happened before the server carried the
// call out: the connection was never made (dial refused or timed out, a
// DNS failure), or the server refused the call (429, or 503 in a ClearML
// envelope: the API server itself, not a proxy that may have forwarded it).
func unsent(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.HTTPStatus == http.StatusTooManyRequests || e.HTTPStatus == http.StatusServiceUnavailable && e.enveloped
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// errNotResent is the failure of a call that is not repeatable whose
// connection closed after the request was written.
var errNotResent = errors.New("connection closed after the request was written")

// decodeError is a 200 answer that is not a ClearML envelope; not retried.
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return e.msg }

// NewBackOff is the agent's one retry delay policy (the client's retries,
// logship's sender): the first delay is base, each next one doubles, capped
// at max, and each is drawn uniformly from [d/2, d] so that agents that lost
// the server together do not come back together. It never gives up; callers
// bound the retries by count or context.
func NewBackOff(base, max time.Duration) *backoff.ExponentialBackOff {
	// The library draws from [c(1-f), c(1+f)] around its current interval
	// c; with c = 3d/4 and f = 1/3 that is [d/2, d].
	return &backoff.ExponentialBackOff{
		InitialInterval:     base * 3 / 4,
		MaxInterval:         max * 3 / 4,
		Multiplier:          2,
		RandomizationFactor: 1.0 / 3,
	}
}

// retryAfter lengthens the next delay to the server's Retry-After hint
// (capped at max) when that is longer.
type retryAfter struct {
	backoff.BackOff
	hint, max time.Duration
}

func (r *retryAfter) NextBackOff() time.Duration {
	d := r.BackOff.NextBackOff()
	if r.hint > d {
		d = min(r.hint, r.max)
	}
	r.hint = 0
	return d
}

// attempt sends the request once, within its own deadline.
// A call that is not repeatable is also not resent by net/http, which
// otherwise resends a GET on a reused connection that closed after the
// request was written.
func (c *Client) attempt(ctx context.Context, endpoint, method, u string, body []byte, contentType, auth string, limit time.Duration, repeatable bool) (json.RawMessage, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, u, rd)
	if err != nil {
		return nil, 0, &decodeError{msg: fmt.Sprintf("%s: build request for %s: %v", endpoint, u, err)}
	}
	if !repeatable {
		// net/http asks for the body again only to resend a request it
		// already wrote (a request it never wrote it resends as is).
		req.GetBody = func() (io.ReadCloser, error) { return nil, errNotResent }
	}
	req.Header = c.baseHeader.Clone()
	req.Header.Set("Authorization", auth)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is reported by TransportError
		}
		return nil, 0, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return nil, 0, fmt.Errorf("read answer: %w", err)
	}
	c.log.Debug("[api] call", "endpoint", endpoint, "method", method, "status", res.StatusCode, "bytes", len(raw), "took", time.Since(start))
	var env envelope
	decErr := json.Unmarshal(raw, &env)
	if decErr != nil || env.Meta.ResultCode == 0 {
		if res.StatusCode == http.StatusOK {
			if decErr == nil && env.Data != nil {
				return env.Data, 0, nil // data without meta: accept
			}
			return nil, 0, &decodeError{msg: fmt.Sprintf("%s: answer from %s is not a ClearML API envelope: %s; check api.api_server points at the API server (port 8008)", endpoint, u, oneline.Squash(string(raw), maxMessage))}
		}
		return nil, retryAfterOf(res), &Error{Endpoint: endpoint, HTTPStatus: res.StatusCode, ResultCode: res.StatusCode, ResultMsg: httpMsg(res, raw)}
	}
	if res.StatusCode != http.StatusOK || env.Meta.ResultCode != http.StatusOK {
		return nil, retryAfterOf(res), &Error{
			enveloped:     true,
			Endpoint:      endpoint,
			HTTPStatus:    res.StatusCode,
			ResultCode:    env.Meta.ResultCode,
			ResultSubcode: env.Meta.ResultSubcode,
			ResultMsg:     env.Meta.ResultMsg,
		}
	}
	return env.Data, 0, nil
}

func httpMsg(res *http.Response, raw []byte) string {
	msg := oneline.Squash(string(raw), maxMessage)
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	return msg
}

func retryAfterOf(res *http.Response) time.Duration {
	s := res.Header.Get("Retry-After")
	if s == "" {
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

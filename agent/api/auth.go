package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ServerInfo is what the server's JWT says about it and about us.
type ServerInfo struct {
	APIVersion    string // e.g. "2.34"; "" when the token does not say
	ServerVersion string // e.g. "2.0.0"
	FeatureSet    string // "basic" on the open-source server
	User          string
	UserName      string
	Company       string
	CompanyName   string
	Role          string
	Expires       time.Time // zero when the token has no exp
}

// Enterprise reports a server whose feature set is not "basic".
func (s ServerInfo) Enterprise() bool { return s.FeatureSet != "" && s.FeatureSet != "basic" }

type tokenClaims struct {
	APIVersion    flexVersion `json:"api_version"`
	ServerVersion flexVersion `json:"server_version"`
	FeatureSet    string      `json:"feature_set"`
	Identity      struct {
		User        string `json:"user"`
		UserName    string `json:"user_name"`
		Company     string `json:"company"`
		CompanyName string `json:"company_name"`
		Role        string `json:"role"`
	} `json:"identity"`
	jwt.RegisteredClaims
}

// Login logs in now (also when the current token is still good) and returns
// what the token says about the server. Use it at startup to fail fast on bad
// credentials.
func (c *Client) Login(ctx context.Context) (ServerInfo, error) {
	c.mu.Lock()
	stale := c.token
	c.mu.Unlock()
	if _, err := c.relogin(ctx, stale); err != nil {
		return ServerInfo{}, err
	}
	return c.ServerInfo(), nil
}

// ServerInfo returns what the last token said; zero before the first login.
func (c *Client) ServerInfo() ServerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// Token returns a valid session token (JWT), logging in or refreshing first
// when needed. Children may get it as CLEARML_AUTH_TOKEN.
func (c *Client) Token(ctx context.Context) (string, error) { return c.currentToken(ctx) }

// currentToken returns the token, refreshing it when its remaining validity
// is below the threshold.
func (c *Client) currentToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, refresh := c.token, c.refresh
	c.mu.Unlock()
	if tok != "" && c.now().Before(refresh) {
		return tok, nil
	}
	return c.relogin(ctx, tok)
}

// relogin logs in unless another goroutine already replaced stale with a
// fresh token meanwhile.
func (c *Client) relogin(ctx context.Context, stale string) (string, error) {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	if c.token != "" && c.token != stale && c.now().Before(c.refresh) {
		tok := c.token
		c.mu.Unlock()
		return tok, nil
	}
	c.mu.Unlock()

	var auth string
	if c.cfg.Token != "" {
		auth = "Bearer " + c.cfg.Token
	} else {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.cfg.AccessKey+":"+c.cfg.SecretKey))
	}
	u := c.host + "/auth.login"
	data, err := c.send(ctx, "auth.login", http.MethodGet, u, nil, "", auth)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && !retryable(e) {
			return "", &LoginError{Host: c.host, HTTPStatus: e.HTTPStatus, ResultCode: e.ResultCode, ResultSub: e.ResultSubcode, ResultMsg: e.ResultMsg, TokenMode: c.cfg.Token != ""}
		}
		return "", err
	}
	var out struct {
		Token string `json:"token"`
	}
	if len(data) > 0 {
		_ = json.Unmarshal(data, &out)
	}
	if out.Token == "" {
		return "", &LoginError{Host: c.host, HTTPStatus: 200, ResultCode: 200, ResultMsg: "data.token is empty", TokenMode: c.cfg.Token != ""}
	}
	c.setToken(out.Token)
	c.log.Debug("[api] logged in", "host", c.host, "api_version", c.info.APIVersion, "server_version", c.info.ServerVersion, "expires", c.info.Expires, "refresh_at", c.refresh)
	return out.Token, nil
}

// setToken makes tok the session token and works out when to refresh it.
func (c *Client) setToken(tok string) {
	info, iat := c.decodeToken(tok)
	now := c.now()
	refresh := now.Add(100 * 365 * 24 * time.Hour)
	if !info.Expires.IsZero() {
		start := iat
		if start.IsZero() || start.After(now) {
			start = now
		}
		threshold := min(c.cfg.TokenExpirationThreshold, info.Expires.Sub(start)/2)
		refresh = info.Expires.Add(-threshold)
	}
	c.mu.Lock()
	c.token, c.info, c.refresh = tok, info, refresh
	c.mu.Unlock()
}

// decodeToken reads the JWT claims without verifying the signature (the
// server verifies it). An undecodable token yields zero info: never refreshed
// early, no version clamp.
func (c *Client) decodeToken(tok string) (ServerInfo, time.Time) {
	var cl tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &cl); err != nil {
		c.log.Debug("[api] cannot decode session token; using it as is", "err", err)
		return ServerInfo{}, time.Time{}
	}
	info := ServerInfo{
		APIVersion:    string(cl.APIVersion),
		ServerVersion: string(cl.ServerVersion),
		FeatureSet:    cl.FeatureSet,
		User:          cl.Identity.User,
		UserName:      cl.Identity.UserName,
		Company:       cl.Identity.Company,
		CompanyName:   cl.Identity.CompanyName,
		Role:          cl.Identity.Role,
	}
	if cl.ExpiresAt != nil {
		info.Expires = cl.ExpiresAt.Time
	}
	var iat time.Time
	if cl.IssuedAt != nil {
		iat = cl.IssuedAt.Time
	}
	return info, iat
}

package emulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// CompanyID is the company every emulator user belongs to.
const CompanyID = "emulator-company"

// identity is the token's "identity" claim.
type identity struct {
	User        string `json:"user"`
	UserName    string `json:"user_name,omitempty"`
	Company     string `json:"company"`
	CompanyName string `json:"company_name,omitempty"`
	Role        string `json:"role"`
}

type tokenClaims struct {
	Identity      identity `json:"identity"`
	APIVersion    string   `json:"api_version"`
	ServerVersion string   `json:"server_version"`
	FeatureSet    string   `json:"feature_set"`
	jwt.RegisteredClaims
}

// userFor derives a stable user id from an access key.
func userFor(access string) identity {
	sum := sha256.Sum256([]byte(access))
	return identity{
		User: hex.EncodeToString(sum[:16]), UserName: "emulator user " + access,
		Company: CompanyID, CompanyName: "emulator", Role: "user",
	}
}

// AddCredentials accepts a new access/secret key pair from now on.
func (s *Server) AddCredentials(access, secret string) {
	s.mu.Lock()
	s.creds[access] = secret
	s.changed()
	s.mu.Unlock()
}

// authLogin implements auth.login: HTTP Basic key:secret, or a valid Bearer
// token (token mode, CLEARML_AUTH_TOKEN), gives {"token": <JWT>}.
// Optional expiration_sec (query or body) sets the lifetime.
func (s *Server) authLogin(r *http.Request) (any, *apiError) {
	auth := r.Header.Get("Authorization")
	var id identity
	switch {
	case auth == "":
		return nil, errMissingCredentials()
	case strings.HasPrefix(auth, "Basic "):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(auth, "Basic ")))
		if err != nil {
			return nil, errMalformedCredentials("bad base64")
		}
		access, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, errMalformedCredentials("expected key:secret")
		}
		if access == "" && secret == "" {
			return nil, errMissingCredentials()
		}
		s.mu.Lock()
		want, known := s.creds[access]
		s.mu.Unlock()
		if !known || want != secret {
			return nil, errInvalidCredentials()
		}
		id = userFor(access)
	case strings.HasPrefix(auth, "Bearer "):
		var aerr *apiError
		if id, aerr = s.authenticate(r); aerr != nil {
			return nil, aerr
		}
	default:
		return nil, &apiError{code: http.StatusUnauthorized, subcode: 10, msg: "Unauthorized (bad authentication header type)"}
	}
	ttl := s.opts.TokenTTL
	if v := r.URL.Query().Get("expiration_sec"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, errValidation("expiration_sec", "expected a positive integer, got "+strconv.Quote(v))
		}
		ttl = time.Duration(n) * time.Second
	}
	now := s.opts.Now()
	claims := tokenClaims{
		Identity: id, APIVersion: s.opts.APIVersion, ServerVersion: ServerVersion, FeatureSet: "basic",
		RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	s.mu.Lock()
	key := s.signingKey
	s.mu.Unlock()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		return nil, &apiError{code: http.StatusInternalServerError, subcode: 1, msg: "Internal server error (signing token: " + err.Error() + ")"}
	}
	return map[string]any{"token": tok}, nil
}

// authenticate checks the Bearer token of an API call.
func (s *Server) authenticate(r *http.Request) (identity, *apiError) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return identity{}, errMissingCredentials()
	}
	if !strings.HasPrefix(auth, "Bearer ") {
		return identity{}, &apiError{code: http.StatusUnauthorized, subcode: 10, msg: "Unauthorized (bad authentication header type)"}
	}
	s.mu.Lock()
	key := s.signingKey
	s.mu.Unlock()
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(strings.TrimPrefix(auth, "Bearer ")), &claims,
		func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(s.opts.Now), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return identity{}, errInvalidToken("token expired")
	case err != nil:
		return identity{}, errInvalidToken(err.Error())
	}
	return claims.Identity, nil
}

package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/ratelimit"
)

// TokenFile is the admin token's file name inside the data dir.
const TokenFile = "admin.token"

// TokenPath returns where the admin token of dataDir lives.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFile) }

// NATSTokenFile holds the token clients of the embedded NATS server must
// present when its client port is open (--nats-listen).
const NATSTokenFile = "nats.token"

// LoadOrCreate returns the admin token of dataDir, creating it (mode 0600)
// if there is none. created reports whether it was made now.
func LoadOrCreate(dataDir string) (token string, created bool, err error) {
	return loadOrCreate(dataDir, TokenFile, "tern_")
}

// LoadOrCreateNATS is LoadOrCreate for the NATS client token
// (NATSTokenFile); it is URL-safe, for nats://<token>@host:port.
func LoadOrCreateNATS(dataDir string) (token string, created bool, err error) {
	return loadOrCreate(dataDir, NATSTokenFile, "ternnats_")
}

func loadOrCreate(dataDir, name, prefix string) (token string, created bool, err error) {
	path := filepath.Join(dataDir, name)
	if tok, err := Load(path); err == nil {
		return tok, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("auth: %w", err)
	}
	tok := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	// Write the whole token to a temp file (mode 0600), then link it into
	// place: the link fails if the file exists, and a reader never sees a
	// created but not yet written file, as one racing an O_EXCL create would.
	f, err := os.CreateTemp(dataDir, "."+name+"-*")
	if err != nil {
		return "", false, fmt.Errorf("auth: create token: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("auth: write token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, fmt.Errorf("auth: write token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("auth: write token: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			tok, err := Load(path)
			return tok, false, err
		}
		return "", false, fmt.Errorf("auth: create token: %w", err)
	}
	return tok, true, nil
}

// Load reads a token file.
func Load(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth: read token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("auth: token file %s is empty", path)
	}
	return tok, nil
}

// Require wraps next so that it runs only for requests bearing token
// (Middleware without keys).
func Require(token string, next http.Handler) http.Handler {
	return Middleware(token, nil, next)
}

// Middleware authenticates every request before next: the admin token
// (role admin, principal AdminTokenID) or a key of keys (nil: the admin
// token only), sent as "Authorization: Bearer <token>" or
// "X-Tern-Key: <key>". It answers 401 when there is none or it is not
// valid (an unknown, revoked or expired key), and otherwise puts the
// Principal in the request's context for the routes to check (Check,
// Permit).
func Middleware(token string, keys *Keys, next http.Handler) http.Handler {
	return (&Authenticator{Token: token, Keys: keys}).Guard(next)
}

// Guard is Middleware with a itself: it also holds each key to its rate
// limit (429 with Retry-After).
func (a *Authenticator) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err == nil {
			err = a.Limit(w, p)
		}
		if err != nil {
			Challenge(w, err)
			apierror.Write(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Authenticator finds who sent a request: the admin token or a key.
type Authenticator struct {
	Token string
	Keys  *Keys // nil: the admin token only
	// KeyRPS and KeyBurst limit each key's requests (0: no limit); the
	// admin token is not limited.
	KeyRPS, KeyBurst int

	limitsOnce sync.Once
	limits     *ratelimit.Limits
}

// Limit takes one of p's requests from its key's rate limit.
func (a *Authenticator) Limit(w http.ResponseWriter, p Principal) error {
	if a.KeyRPS <= 0 || p.ID == AdminTokenID {
		return nil
	}
	a.limitsOnce.Do(func() { a.limits = ratelimit.New() })
	if ok, wait := a.limits.Allow(p.ID, a.KeyRPS, a.KeyBurst, time.Now()); !ok {
		return ratelimit.Refuse(w, "key "+p.ID, wait)
	}
	return nil
}

// Authenticate returns the request's principal, or an API error: 401
// when it carries no credential or one that is not valid (an unknown,
// revoked or expired key), 503 when keys cannot be checked now.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	got, ok := Credential(r)
	if !ok {
		return Principal{}, errMissing
	}
	var p Principal
	var err error
	switch {
	case subtle.ConstantTimeCompare([]byte(got), []byte(a.Token)) == 1:
		p = Principal{ID: AdminTokenID, Role: RoleAdmin}
	case a.Keys != nil && strings.HasPrefix(got, KeyPrefix):
		p, err = a.Keys.Authenticate(got)
	default:
		err = ErrUnknownKey
	}
	switch {
	case errors.Is(err, ErrUnavailable):
		return Principal{}, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "keys cannot be checked now (the key store is unavailable); the admin token still works")
	case errors.Is(err, ErrExpired):
		return Principal{}, errExpired
	case err != nil:
		return Principal{}, errInvalid
	}
	return p, nil
}

var (
	errMissing = apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "missing bearer token: send Authorization: Bearer <token> (or X-Tern-Key: <key>)")
	errExpired = apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "key expired")
	errInvalid = apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "invalid token")
)

// Challenge sets the WWW-Authenticate header a 401 from Authenticate
// goes with.
func Challenge(w http.ResponseWriter, err error) {
	switch err {
	case errMissing:
		w.Header().Set("WWW-Authenticate", `Bearer realm="tern"`)
	case errExpired:
		w.Header().Set("WWW-Authenticate", `Bearer realm="tern", error="invalid_token", error_description="expired"`)
	case errInvalid:
		w.Header().Set("WWW-Authenticate", `Bearer realm="tern", error="invalid_token"`)
	}
}

// Credential is the token or key a request carries: "Authorization:
// Bearer <token>" or else "X-Tern-Key: <key>".
func Credential(r *http.Request) (string, bool) {
	if got, ok := bearer(r); ok {
		return got, true
	}
	got := strings.TrimSpace(r.Header.Get("X-Tern-Key"))
	return got, got != ""
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

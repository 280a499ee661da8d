package auth

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/ternhq/tern/internal/apierror"
)

// Permission is one kind of access a route needs.
type Permission string

// The permissions, from least to most powerful. Every API route needs
// exactly one (see routePermission in package api).
const (
	// PermRead: every GET of the API (functions, logs, stats, aliases,
	// instances, usage, events overview, topics, dead letters, secret
	// names).
	PermRead Permission = "read"
	// PermInvoke: invoking functions, posting CloudEvents, publishing to
	// topics.
	PermInvoke Permission = "invoke"
	// PermDeploy: every change to functions and topics (deploy, delete,
	// aliases, rollback, topics, dead-letter replay, secrets).
	PermDeploy Permission = "deploy"
	// PermAdmin: keys, the audit stream, /metrics and /v1/debug/pprof.
	PermAdmin Permission = "admin"
)

// Permissions lists every permission.
var Permissions = []Permission{PermRead, PermInvoke, PermDeploy, PermAdmin}

// Role names a set of permissions.
type Role string

// The roles.
const (
	RoleAdmin    Role = "admin"    // everything
	RoleDeployer Role = "deployer" // read, invoke, deploy
	RoleInvoker  Role = "invoker"  // invoke only
	RoleViewer   Role = "viewer"   // read only
)

// Roles lists every role.
var Roles = []Role{RoleAdmin, RoleDeployer, RoleInvoker, RoleViewer}

var grants = map[Role][]Permission{
	RoleAdmin:    {PermRead, PermInvoke, PermDeploy, PermAdmin},
	RoleDeployer: {PermRead, PermInvoke, PermDeploy},
	RoleInvoker:  {PermInvoke},
	RoleViewer:   {PermRead},
}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if _, ok := grants[r]; !ok {
		return "", fmt.Errorf("%w: role %q: want admin, deployer, invoker or viewer", ErrInvalid, s)
	}
	return r, nil
}

// Grants reports whether the role includes perm.
func (r Role) Grants(perm Permission) bool { return slices.Contains(grants[r], perm) }

// AdminTokenID is the principal id of the admin token.
const AdminTokenID = "admin-token"

// Principal is who sent a request: the admin token or a key.
type Principal struct {
	// ID is the key's id, or AdminTokenID.
	ID   string
	Role Role
	// Functions, when not empty, limits the principal to routes about
	// these functions (see Allows).
	Functions []string
}

// Allows reports whether p may use a route needing perm. function names
// the function the route is about ("name" and "name@alias" are the same
// function); "" means the route is not about one function (listing
// functions, instances, usage, topics, CloudEvents), which a principal
// limited to functions may not use.
func (p Principal) Allows(perm Permission, function string) bool {
	if !p.Role.Grants(perm) {
		return false
	}
	if len(p.Functions) == 0 {
		return true
	}
	fn, _, _ := strings.Cut(function, "@")
	return fn != "" && slices.Contains(p.Functions, fn)
}

func (p Principal) String() string {
	if p.ID == AdminTokenID {
		return "the admin token"
	}
	s := "key " + p.ID + " (" + string(p.Role)
	if len(p.Functions) > 0 {
		s += ", limited to " + strings.Join(p.Functions, ", ")
	}
	return s + ")"
}

func (r Role) String() string { return string(r) }

// CodeForbidden is the API code of a request whose principal lacks the
// permission.
const CodeForbidden = "forbidden"

// Forbidden returns the 403 error for p wanting perm on function.
func Forbidden(p Principal, perm Permission, function string) error {
	msg := fmt.Sprintf("%s may not %s", p, perm)
	if function != "" {
		msg += " function " + function
	} else if len(p.Functions) > 0 && p.Role.Grants(perm) {
		msg += " here: this route is not about one of its functions"
	}
	return apierror.New(http.StatusForbidden, CodeForbidden, msg)
}

// request is what the middleware keeps in a request's context.
type request struct {
	p Principal

	mu       sync.Mutex
	function string // noted by CheckDeploy
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p (for tests and internal callers;
// the middleware does this for requests).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, &request{p: p})
}

// PrincipalFrom returns the principal of an authenticated request's
// context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	r, ok := ctx.Value(ctxKey{}).(*request)
	if !ok {
		return Principal{}, false
	}
	return r.p, true
}

// Check returns nil when r's principal may use a route needing perm on
// function (see Principal.Allows), a 403 error when it may not, and a 401
// error when r was not authenticated.
func Check(r *http.Request, perm Permission, function string) error {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "not authenticated")
	}
	if !p.Allows(perm, function) {
		return Forbidden(p, perm, function)
	}
	return nil
}

// CheckDeploy is the deploy route's second check, once the package's
// manifest has named the function: a principal limited to functions may
// deploy only those. It notes name for the audit record (see
// DeployedFunction). A context without a principal is not from the API
// (whose routes all need one) and passes.
func CheckDeploy(ctx context.Context, name string) error {
	r, ok := ctx.Value(ctxKey{}).(*request)
	if !ok {
		return nil
	}
	r.mu.Lock()
	r.function = name
	r.mu.Unlock()
	if !r.p.Allows(PermDeploy, name) {
		return Forbidden(r.p, PermDeploy, name)
	}
	return nil
}

// DeployedFunction returns the function name CheckDeploy saw for this
// request, or "".
func DeployedFunction(ctx context.Context) string {
	r, ok := ctx.Value(ctxKey{}).(*request)
	if !ok {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.function
}

// Permit wraps next so that it runs only for principals with perm and no
// function list (for /metrics and /v1/debug/pprof/, behind Middleware).
func Permit(perm Permission, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := Check(r, perm, ""); err != nil {
			apierror.Write(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

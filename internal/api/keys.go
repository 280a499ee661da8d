package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/auth"
)

// Access is the API's access control: every route checks the principal's
// permission (routePermission), and every change is recorded in the
// audit stream. It also serves the keys and the audit stream.
type Access struct {
	Keys  *auth.Keys
	Audit *audit.Log // nil: changes are not recorded
	Log   *slog.Logger
}

// scope says which function a route is about.
type scope int

const (
	scopeNone   scope = iota // not about one function
	scopeName                // the {name} path value ("fn" or "fn@alias")
	scopeDeploy              // the uploaded manifest's name: checked by auth.CheckDeploy
)

// routeRule is what a route needs and what it records.
type routeRule struct {
	perm  auth.Permission // "": any authenticated principal (the 404 catch-all)
	scope scope
	// action, when set, makes the route a change recorded in the audit
	// stream.
	action string
	// target is the path value naming what was changed ("" for the
	// function itself or what the answer names).
	target string
}

// routeRules maps every API pattern to its rule. When you add a route, add it
// here: a pattern missing here needs PermAdmin (and is logged at start).
//
// A key limited to functions may use only the routes about one of its
// functions (scopeName) and deploy them (scopeDeploy); the others (lists,
// instances, usage, topics, CloudEvents) are refused to it, since they are
// about every function.
var routeRules = map[string]routeRule{
	"POST /v1/functions":                           {perm: auth.PermDeploy, scope: scopeDeploy, action: audit.ActionDeploy},
	"GET /v1/functions":                            {perm: auth.PermRead},
	"GET /v1/functions/{name}":                     {perm: auth.PermRead, scope: scopeName},
	"DELETE /v1/functions/{name}":                  {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionDelete},
	"POST /v1/functions/{name}/invoke":             {perm: auth.PermInvoke, scope: scopeName},
	"GET /v1/functions/{name}/logs":                {perm: auth.PermRead, scope: scopeName},
	"GET /v1/functions/{name}/stats":               {perm: auth.PermRead, scope: scopeName},
	"GET /v1/functions/{name}/aliases":             {perm: auth.PermRead, scope: scopeName},
	"PUT /v1/functions/{name}/aliases/{alias}":     {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionAliasSet, target: "alias"},
	"DELETE /v1/functions/{name}/aliases/{alias}":  {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionAliasDelete, target: "alias"},
	"POST /v1/functions/{name}/rollback":           {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionRollback},
	"GET /v1/functions/{name}/dlq":                 {perm: auth.PermRead, scope: scopeName},
	"POST /v1/functions/{name}/dlq/replay":         {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionDLQReplay},
	"GET /v1/functions/{name}/secrets":             {perm: auth.PermRead, scope: scopeName},
	"PUT /v1/functions/{name}/secrets/{secret}":    {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionSecretSet, target: "secret"},
	"DELETE /v1/functions/{name}/secrets/{secret}": {perm: auth.PermDeploy, scope: scopeName, action: audit.ActionSecretDelete, target: "secret"},
	"GET /v1/instances":                            {perm: auth.PermRead},
	"GET /v1/usage":                                {perm: auth.PermRead},
	"POST /v1/events":                              {perm: auth.PermInvoke},
	"GET /v1/events":                               {perm: auth.PermRead},
	"GET /v1/topics":                               {perm: auth.PermRead},
	"POST /v1/topics":                              {perm: auth.PermDeploy, action: audit.ActionTopicCreate},
	"GET /v1/topics/{topic}":                       {perm: auth.PermRead},
	"DELETE /v1/topics/{topic}":                    {perm: auth.PermDeploy, action: audit.ActionTopicDelete, target: "topic"},
	"POST /v1/topics/{topic}/messages":             {perm: auth.PermInvoke},
	"POST /v1/keys":                                {perm: auth.PermAdmin, action: audit.ActionKeyCreate},
	"GET /v1/keys":                                 {perm: auth.PermAdmin},
	"DELETE /v1/keys/{id}":                         {perm: auth.PermAdmin, action: audit.ActionKeyRevoke, target: "id"},
	"GET /v1/audit":                                {perm: auth.PermAdmin},
	"/v1/":                                         {}, // answers 404 to anyone authenticated
}

// routePermission returns the rule of a route pattern; a pattern not in
// the table needs PermAdmin.
func routePermission(pattern string) (routeRule, bool) {
	r, ok := routeRules[pattern]
	if !ok {
		return routeRule{perm: auth.PermAdmin}, false
	}
	return r, true
}

// readsAnswer lists the changes whose audit record takes the function,
// version or topic from the answer.
var readsAnswer = map[string]bool{
	audit.ActionDeploy: true, audit.ActionRollback: true, audit.ActionAliasSet: true,
	audit.ActionTopicCreate: true, audit.ActionDLQReplay: true,
}

// guard wraps h with pattern's permission check and, for a change, its
// audit record. A nil Access checks nothing (for tests that call the
// handler without authentication in front).
func (x *Access) guard(pattern string, h handler) handler {
	if x == nil {
		return h
	}
	rule, known := routePermission(pattern)
	if !known && x.Log != nil {
		x.Log.Warn("api: route missing from the permission table: admin only", "route", pattern)
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		p, ok := auth.PrincipalFrom(r.Context())
		if !ok {
			return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "not authenticated")
		}
		if rule.perm == "" {
			return h(w, r)
		}
		var err error
		switch rule.scope {
		case scopeDeploy:
			// The role now; the function once the manifest names it.
			if !p.Role.Grants(rule.perm) {
				err = auth.Forbidden(p, rule.perm, "")
			}
		case scopeName:
			err = auth.Check(r, rule.perm, r.PathValue("name"))
		default:
			err = auth.Check(r, rule.perm, "")
		}
		if rule.action == "" {
			if err != nil {
				return err
			}
			return h(w, r)
		}
		note := &auditNote{}
		r = r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note))
		// Only answers that name what changed are read; never a key's.
		rec := &auditRecorder{ResponseWriter: w, capture: readsAnswer[rule.action]}
		if err == nil {
			err = h(rec, r)
		}
		x.record(r, p, rule, rec, note, err)
		return err
	}
}

// routes adds the keys and audit routes.
func (x *Access) routes(route func(string, handler)) {
	if x == nil {
		return
	}
	route("POST /v1/keys", x.createKey)
	route("GET /v1/keys", x.listKeys)
	route("DELETE /v1/keys/{id}", x.revokeKey)
	route("GET /v1/audit", x.readAudit)
}

// KeyRequest asks for a key.
type KeyRequest struct {
	Role      string   `json:"role"`
	Functions []string `json:"functions,omitempty"`
	// Expires is how long the key is valid ("30d", "12h"); empty: until
	// revoked.
	Expires string `json:"expires,omitempty"`
	Name    string `json:"name,omitempty"`
}

// KeyCreated is a new key: Secret is shown this once.
type KeyCreated struct {
	Secret string `json:"key"`
	auth.Key
}

func (x *Access) createKey(w http.ResponseWriter, r *http.Request) error {
	var req KeyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	spec := auth.KeySpec{Name: req.Name, Role: req.Role, Functions: req.Functions}
	if req.Expires != "" {
		d, err := auth.ParseDuration(req.Expires)
		if err != nil || d <= 0 {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "expires: want a positive duration such as 30d or 12h, got "+req.Expires)
		}
		spec.TTL = d
	}
	p, _ := auth.PrincipalFrom(r.Context())
	secret, k, err := x.Keys.Create(r.Context(), spec, p.ID)
	if errors.Is(err, auth.ErrInvalid) {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, err.Error())
	}
	if err != nil {
		return err
	}
	noteTarget(r, k.ID, keyDetail(k))
	w.Header().Set("Cache-Control", "no-store")
	apierror.WriteJSON(w, http.StatusCreated, KeyCreated{Secret: secret, Key: *k})
	return nil
}

func (x *Access) listKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := x.Keys.List(r.Context())
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Keys []auth.Key `json:"keys"`
	}{ks})
	return nil
}

func (x *Access) revokeKey(w http.ResponseWriter, r *http.Request) error {
	k, err := x.Keys.Revoke(r.Context(), r.PathValue("id"))
	if errors.Is(err, auth.ErrNotFound) {
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, err.Error())
	}
	if err != nil {
		return err
	}
	noteTarget(r, k.ID, keyDetail(k))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// keyDetail describes a key for its audit records.
func keyDetail(k *auth.Key) string {
	s := "role " + string(k.Role)
	if len(k.Functions) > 0 {
		s += " functions " + strings.Join(k.Functions, ",")
	}
	if k.Name != "" {
		s += " name " + strconv.Quote(k.Name)
	}
	if !k.Expires.IsZero() {
		s += " expires " + k.Expires.Format(time.RFC3339)
	}
	return s
}

package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/apierror"
)

func TestAllows(t *testing.T) {
	// What each role is granted, unscoped.
	want := map[Role]map[Permission]bool{
		RoleAdmin:    {PermRead: true, PermInvoke: true, PermDeploy: true, PermAdmin: true},
		RoleDeployer: {PermRead: true, PermInvoke: true, PermDeploy: true},
		RoleInvoker:  {PermInvoke: true},
		RoleViewer:   {PermRead: true},
	}
	for _, role := range Roles {
		for _, perm := range Permissions {
			granted := want[role][perm]
			if got := role.Grants(perm); got != granted {
				t.Errorf("%s.Grants(%s) = %v", role, perm, got)
			}
			unscoped := Principal{ID: "k", Role: role}
			scoped := Principal{ID: "k", Role: role, Functions: []string{"mine", "also"}}
			for _, tt := range []struct {
				p        Principal
				function string
				want     bool
			}{
				{unscoped, "", granted},
				{unscoped, "mine", granted},
				{unscoped, "other", granted},
				{unscoped, "other@live", granted},
				{scoped, "mine", granted},
				{scoped, "also", granted},
				{scoped, "mine@live", granted},
				{scoped, "other", false},
				{scoped, "other@mine", false},
				{scoped, "mine2", false},
				{scoped, "@mine", false},
				{scoped, "", false}, // a route about every function
			} {
				if got := tt.p.Allows(perm, tt.function); got != tt.want {
					t.Errorf("%s (functions %v).Allows(%s, %q) = %v, want %v", role, tt.p.Functions, perm, tt.function, got, tt.want)
				}
			}
		}
	}
	if _, err := ParseRole("superuser"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseRole(superuser) = %v", err)
	}
	for _, r := range Roles {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%s) = %v, %v", r, got, err)
		}
	}
}

// decodeError reads an API error answer.
func decodeError(t *testing.T, rec *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	var b struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return b.Code, b.Error
}

func TestMiddlewareWithKeys(t *testing.T) {
	const admin = "tern_admintoken"
	k := startKeys(t, testBucket(t))
	ctx := context.Background()
	viewer, viewerKey, err := k.Create(ctx, KeySpec{Role: "viewer"}, AdminTokenID)
	if err != nil {
		t.Fatal(err)
	}
	invoker, _, err := k.Create(ctx, KeySpec{Role: "invoker", Functions: []string{"fn"}}, AdminTokenID)
	if err != nil {
		t.Fatal(err)
	}
	expiring, _, err := k.Create(ctx, KeySpec{Role: "admin", TTL: time.Hour}, AdminTokenID)
	if err != nil {
		t.Fatal(err)
	}
	k.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	revoked, revokedKey, err := k.Create(ctx, KeySpec{Role: "admin"}, AdminTokenID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Revoke(ctx, revokedKey.ID); err != nil {
		t.Fatal(err)
	}

	var seen Principal
	h := Middleware(admin, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			t.Error("no principal in the context")
		}
		seen = p
		if err := Check(r, PermInvoke, r.URL.Query().Get("fn")); err != nil {
			apierror.Write(w, err)
			return
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	tests := []struct {
		name   string
		header map[string]string
		fn     string
		status int
		id     string
		code   string
		msg    string
	}{
		{"admin token", map[string]string{"Authorization": "Bearer " + admin}, "x", http.StatusTeapot, AdminTokenID, "", ""},
		{"admin token in X-Tern-Key", map[string]string{"X-Tern-Key": admin}, "x", http.StatusTeapot, AdminTokenID, "", ""},
		{"invoker, its function", map[string]string{"Authorization": "Bearer " + invoker}, "fn", http.StatusTeapot, "", "", ""},
		{"invoker, its function's alias", map[string]string{"X-Tern-Key": invoker}, "fn@live", http.StatusTeapot, "", "", ""},
		{"invoker, another function", map[string]string{"X-Tern-Key": invoker}, "other", http.StatusForbidden, "", CodeForbidden, "may not invoke function other"},
		{"viewer cannot invoke", map[string]string{"Authorization": "bearer " + viewer}, "fn", http.StatusForbidden, viewerKey.ID, CodeForbidden, "(viewer) may not invoke"},
		{"Authorization wins", map[string]string{"Authorization": "Bearer " + viewer, "X-Tern-Key": admin}, "fn", http.StatusForbidden, viewerKey.ID, CodeForbidden, ""},
		{"expired", map[string]string{"Authorization": "Bearer " + expiring}, "fn", http.StatusUnauthorized, "", apierror.CodeUnauthorized, "expired"},
		{"revoked", map[string]string{"Authorization": "Bearer " + revoked}, "fn", http.StatusUnauthorized, "", apierror.CodeUnauthorized, "invalid"},
		{"made up", map[string]string{"X-Tern-Key": "tern_k_000000000000_abc"}, "fn", http.StatusUnauthorized, "", apierror.CodeUnauthorized, "invalid"},
		{"none", nil, "fn", http.StatusUnauthorized, "", apierror.CodeUnauthorized, "missing"},
		{"empty X-Tern-Key", map[string]string{"X-Tern-Key": "  "}, "fn", http.StatusUnauthorized, "", apierror.CodeUnauthorized, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = Principal{}
			req := httptest.NewRequest(http.MethodPost, "/v1/functions/x/invoke?fn="+tt.fn, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body.String())
			}
			if tt.id != "" && seen.ID != tt.id {
				t.Errorf("principal %+v, want id %s", seen, tt.id)
			}
			if tt.code != "" {
				code, msg := decodeError(t, rec)
				if code != tt.code || !strings.Contains(msg, tt.msg) {
					t.Errorf("answer %q %q, want %q containing %q", code, msg, tt.code, tt.msg)
				}
				if strings.Contains(rec.Body.String(), "tern_k_") {
					t.Errorf("the answer shows a key: %s", rec.Body.String())
				}
			}
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer realm="tern"`) {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestPermit(t *testing.T) {
	h := Permit(PermAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, tt := range []struct {
		p    *Principal
		want int
	}{
		{nil, http.StatusUnauthorized},
		{&Principal{ID: AdminTokenID, Role: RoleAdmin}, http.StatusTeapot},
		{&Principal{ID: "k", Role: RoleAdmin}, http.StatusTeapot},
		{&Principal{ID: "k", Role: RoleDeployer}, http.StatusForbidden},
		{&Principal{ID: "k", Role: RoleViewer}, http.StatusForbidden},
	} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tt.p != nil {
			req = req.WithContext(WithPrincipal(req.Context(), *tt.p))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%+v: %d, want %d", tt.p, rec.Code, tt.want)
		}
	}
}

func TestCheckDeploy(t *testing.T) {
	if err := CheckDeploy(context.Background(), "any"); err != nil {
		t.Errorf("no principal: %v", err)
	}
	if DeployedFunction(context.Background()) != "" {
		t.Error("DeployedFunction without a request")
	}
	scoped := WithPrincipal(context.Background(), Principal{ID: "k", Role: RoleDeployer, Functions: []string{"mine"}})
	if err := CheckDeploy(scoped, "mine"); err != nil {
		t.Errorf("scoped deployer, its function: %v", err)
	}
	err := CheckDeploy(scoped, "other")
	if status, code := apierror.Classify(err); status != http.StatusForbidden || code != CodeForbidden {
		t.Errorf("scoped deployer, another function: %v (%d %s)", err, status, code)
	}
	if got := DeployedFunction(scoped); got != "other" {
		t.Errorf("DeployedFunction = %q, want other", got)
	}
	viewer := WithPrincipal(context.Background(), Principal{ID: "k", Role: RoleViewer})
	if err := CheckDeploy(viewer, "x"); err == nil {
		t.Error("viewer may deploy")
	}
	admin := WithPrincipal(context.Background(), Principal{ID: AdminTokenID, Role: RoleAdmin})
	if err := CheckDeploy(admin, "x"); err != nil {
		t.Errorf("admin: %v", err)
	}
}

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/testserver"
)

const okJS = `exports.handler = async () => "ok";`

// pkg builds the zip package of a function called name.
func pkg(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := archive.Build(testserver.WriteFunction(t, fn(name, "index.handler", map[string]string{"index.js": okJS})), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newKey makes a key with the admin token and returns it.
func newKey(t *testing.T, s *testserver.Server, req api.KeyRequest) *api.KeyCreated {
	t.Helper()
	k, err := s.Client.CreateKey(context.Background(), req)
	if err != nil {
		t.Fatalf("create key %+v: %v", req, err)
	}
	return k
}

// TestRolesOnEveryRoute sends every API route with a key of every role:
// a principal gets 403 exactly where its role (or function list) does
// not allow the route; elsewhere it gets the route's own answer (2xx, or
// a 4xx other than 401 and 403).
func TestRolesOnEveryRoute(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("mine", "index.handler", map[string]string{"index.js": okJS}))
	s.Deploy(fn("other", "index.handler", map[string]string{"index.js": okJS}))
	if _, err := s.Client.CreateTopic(context.Background(), events.TopicConfig{Name: "t1"}); err != nil {
		t.Fatal(err)
	}

	// One letter per principal: A admin key, D deployer, d deployer of
	// mine, I invoker, i invoker of mine, V viewer, v viewer of mine; T is
	// the admin token.
	keys := map[byte]string{'T': s.Token()}
	for letter, req := range map[byte]api.KeyRequest{
		'A': {Role: "admin"},
		'D': {Role: "deployer"},
		'd': {Role: "deployer", Functions: []string{"mine"}},
		'I': {Role: "invoker"},
		'i': {Role: "invoker", Functions: []string{"mine"}},
		'V': {Role: "viewer"},
		'v': {Role: "viewer", Functions: []string{"mine"}},
	} {
		keys[letter] = newKey(t, s, req).Secret
	}
	const everyone = "TADdIiVv"

	ce := `{"specversion":"1.0","id":"x1","source":"test","type":"nobody.listens"}`
	routes := []struct {
		method, path string
		body         func() []byte
		header       map[string]string
		allow        string // who is not answered 403
	}{
		{"POST", "/v1/functions", func() []byte { return pkg(t, "mine") }, map[string]string{"Content-Type": "application/zip"}, "TADd"},
		{"POST", "/v1/functions", func() []byte { return pkg(t, "other") }, map[string]string{"Content-Type": "application/zip"}, "TAD"},
		{"GET", "/v1/functions", nil, nil, "TADV"},
		{"GET", "/v1/functions/mine", nil, nil, "TADdVv"},
		{"GET", "/v1/functions/other", nil, nil, "TADV"},
		{"DELETE", "/v1/functions/ghost", nil, nil, "TAD"},
		{"POST", "/v1/functions/mine/invoke", nil, nil, "TADdIi"},
		{"POST", "/v1/functions/mine@live/invoke", nil, nil, "TADdIi"},
		{"POST", "/v1/functions/other/invoke", nil, nil, "TADI"},
		{"POST", "/v1/functions/other@mine/invoke", nil, nil, "TADI"},
		{"GET", "/v1/functions/mine/logs?since=1m", nil, nil, "TADdVv"},
		{"GET", "/v1/functions/other/logs?since=1m", nil, nil, "TADV"},
		{"GET", "/v1/functions/mine/stats", nil, nil, "TADdVv"},
		{"GET", "/v1/functions/other/stats", nil, nil, "TADV"},
		{"GET", "/v1/functions/mine/aliases", nil, nil, "TADdVv"},
		{"PUT", "/v1/functions/mine/aliases/live", func() []byte { return []byte(`{"version":1}`) }, nil, "TADd"},
		{"PUT", "/v1/functions/other/aliases/live", func() []byte { return []byte(`{"version":1}`) }, nil, "TAD"},
		{"DELETE", "/v1/functions/mine/aliases/gone", nil, nil, "TADd"},
		{"DELETE", "/v1/functions/other/aliases/gone", nil, nil, "TAD"},
		{"POST", "/v1/functions/other/rollback", nil, nil, "TAD"},
		{"GET", "/v1/functions/mine/dlq", nil, nil, "TADdVv"},
		{"POST", "/v1/functions/mine/dlq/replay", nil, nil, "TADd"},
		{"POST", "/v1/functions/other/dlq/replay", nil, nil, "TAD"},
		{"GET", "/v1/functions/mine/secrets", nil, nil, "TADdVv"},
		{"PUT", "/v1/functions/mine/secrets/TOKEN", func() []byte { return []byte("value") }, nil, "TADd"},
		{"PUT", "/v1/functions/other/secrets/TOKEN", func() []byte { return []byte("value") }, nil, "TAD"},
		{"DELETE", "/v1/functions/other/secrets/TOKEN", nil, nil, "TAD"},
		{"GET", "/v1/instances", nil, nil, "TADV"},
		{"GET", "/v1/usage", nil, nil, "TADV"},
		{"GET", "/v1/events", nil, nil, "TADV"},
		{"POST", "/v1/events", func() []byte { return []byte(ce) }, map[string]string{"Content-Type": "application/cloudevents+json"}, "TADI"},
		{"GET", "/v1/topics", nil, nil, "TADV"},
		{"POST", "/v1/topics", func() []byte { return []byte(`{"name":"t2"}`) }, nil, "TAD"},
		{"GET", "/v1/topics/t1", nil, nil, "TADV"},
		{"POST", "/v1/topics/t1/messages", func() []byte { return []byte("hello") }, nil, "TADI"},
		{"DELETE", "/v1/topics/ghost", nil, nil, "TAD"},
		{"POST", "/v1/keys", func() []byte { return []byte(`{"role":"viewer"}`) }, nil, "TA"},
		{"GET", "/v1/keys", nil, nil, "TA"},
		{"DELETE", "/v1/keys/ffffffffffff", nil, nil, "TA"},
		{"GET", "/v1/audit", nil, nil, "TA"},
		{"GET", "/metrics", nil, nil, "TA"},
		{"GET", "/v1/debug/pprof/", nil, nil, "TA"},
		{"GET", "/v1/no/such/route", nil, nil, everyone},
	}
	for _, rt := range routes {
		for i := range len(everyone) {
			who := everyone[i]
			var body []byte
			if rt.body != nil {
				body = rt.body()
			}
			h := map[string]string{"Authorization": "Bearer " + keys[who]}
			for k, v := range rt.header {
				h[k] = v
			}
			status, _, b := s.Do(rt.method, rt.path, bytes.NewReader(body), h)
			allowed := strings.IndexByte(rt.allow, who) >= 0
			switch {
			case status == http.StatusUnauthorized:
				t.Errorf("%s %s as %c: 401 %s", rt.method, rt.path, who, b)
			case allowed && status == http.StatusForbidden:
				t.Errorf("%s %s as %c: 403, want allowed: %s", rt.method, rt.path, who, b)
			case !allowed && status != http.StatusForbidden:
				t.Errorf("%s %s as %c: %d, want 403: %.200s", rt.method, rt.path, who, status, b)
			case !allowed:
				var e struct{ Code, Error string }
				if err := json.Unmarshal(b, &e); err != nil || e.Code != "forbidden" || e.Error == "" {
					t.Errorf("%s %s as %c: 403 body %s", rt.method, rt.path, who, b)
				}
			case status >= 500:
				t.Errorf("%s %s as %c: %d %s", rt.method, rt.path, who, status, b)
			}
		}
	}

	// The X-Tern-Key header works as well as Authorization.
	if status, _, b := s.Do("GET", "/v1/functions/mine", nil, map[string]string{"X-Tern-Key": keys['v']}); status != http.StatusOK {
		t.Errorf("X-Tern-Key: %d %s", status, b)
	}
	// An invoker's key runs its function.
	out, err := client.New(s.URL(), keys['i']).Invoke(context.Background(), "mine", nil)
	if err != nil || string(out) != `"ok"` {
		t.Errorf("invoker invokes its function: %s %v", out, err)
	}
}

// TestRevokedAndExpiredKeys: both get 401, like no key at all.
func TestRevokedAndExpiredKeys(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	revoked := newKey(t, s, api.KeyRequest{Role: "admin", Name: "old"})
	expiring := newKey(t, s, api.KeyRequest{Role: "admin", Expires: "1s"})
	if expiring.Expires.IsZero() || expiring.Expires.Sub(expiring.Created) != time.Second {
		t.Errorf("expiring key: %+v", expiring.Key)
	}
	for _, k := range []*api.KeyCreated{revoked, expiring} {
		if _, err := client.New(s.URL(), k.Secret).List(ctx); err != nil {
			t.Fatalf("key %s before: %v", k.ID, err)
		}
	}
	if err := s.Client.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := client.New(s.URL(), revoked.Secret).List(ctx); !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
		t.Errorf("revoked key: %v, want 401", err)
	}
	testserver.Eventually(t, 5*time.Second, "the key to expire", func() bool {
		_, err := client.New(s.URL(), expiring.Secret).List(ctx)
		return errors.As(err, &ce) && ce.Status == http.StatusUnauthorized && strings.Contains(ce.Message, "expired")
	})
	if err := s.Client.RevokeKey(ctx, revoked.ID); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("revoking again: %v, want 404", err)
	}
	ks, err := s.Client.Keys(ctx)
	if err != nil || len(ks) != 1 || ks[0].ID != expiring.ID {
		t.Errorf("keys left: %+v, %v", ks, err)
	}
	// Bad requests are 400s.
	for _, req := range []api.KeyRequest{{Role: "root"}, {Role: "viewer", Expires: "soon"}, {Role: "viewer", Expires: "-1h"},
		{Role: "invoker", Functions: []string{"no such"}}, {Role: "admin", Functions: []string{"mine"}}} {
		if _, err := s.Client.CreateKey(ctx, req); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("create %+v: %v, want 400", req, err)
		}
	}
	status, h, b := s.Do("POST", "/v1/keys", strings.NewReader(`{"role":"viewer"}`), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != http.StatusCreated || h.Get("Cache-Control") != "no-store" || !strings.Contains(string(b), `"key":"tern_k_`) {
		t.Errorf("create: %d %v %s", status, h, b)
	}
	if status, _, b := s.Do("POST", "/v1/keys", strings.NewReader(`{"role":"viewer","extra":1}`), map[string]string{"Authorization": "Bearer " + s.Token()}); status != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", status, b)
	}
}

// TestAuditRecordsChanges: deploy, alias, secret, delete, key changes and refused
// attempts are recorded with their principal; reads and invocations are
// not; no entry holds a key.
func TestAuditRecordsChanges(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	dep := newKey(t, s, api.KeyRequest{Role: "deployer", Functions: []string{"audited"}, Name: "ci"})
	viewer := newKey(t, s, api.KeyRequest{Role: "viewer"})
	dc := client.New(s.URL(), dep.Secret)
	v, err := dc.Deploy(ctx, bytes.NewReader(pkg(t, "audited")))
	if err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := dc.Deploy(ctx, bytes.NewReader(pkg(t, "elsewhere"))); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("scoped deployer deploys another function: %v, want 403", err)
	}
	if fs, _ := s.Client.List(ctx); len(fs) != 1 {
		t.Errorf("the refused deploy was recorded: %+v", fs)
	}
	if _, err := dc.Invoke(ctx, "audited", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.SetAlias(ctx, "audited", "live", nil); err == nil {
		t.Fatal("empty alias accepted")
	}
	status, _, b := s.Do("PUT", "/v1/functions/audited/aliases/live", strings.NewReader(`{"version":1}`), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != http.StatusOK {
		t.Fatalf("alias: %d %s", status, b)
	}
	status, _, b = s.Do("PUT", "/v1/functions/audited/secrets/API_TOKEN", strings.NewReader("s3cr3t-value"), map[string]string{"X-Tern-Key": dep.Secret})
	if status != http.StatusNoContent {
		t.Fatalf("secret: %d %s", status, b)
	}
	if err := client.New(s.URL(), viewer.Secret).Delete(ctx, "audited"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("viewer deletes: %v", err)
	}
	if err := dc.Delete(ctx, "audited"); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.RevokeKey(ctx, viewer.ID); err != nil {
		t.Fatal(err)
	}

	es, err := s.Client.Audit(ctx, client.AuditQuery{Since: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ principal, role, action, function, target string }
	want := []struct {
		row
		version int
		outcome string
	}{
		{row{"admin-token", "admin", audit.ActionKeyCreate, "", dep.ID}, 0, "ok"},
		{row{"admin-token", "admin", audit.ActionKeyCreate, "", viewer.ID}, 0, "ok"},
		{row{dep.ID, "deployer", audit.ActionDeploy, "audited", "audited"}, v.Version, "ok"},
		{row{dep.ID, "deployer", audit.ActionDeploy, "elsewhere", "elsewhere"}, 0, "forbidden"},
		{row{"admin-token", "admin", audit.ActionAliasSet, "audited", "audited@live"}, 0, "invalid_alias"},
		{row{"admin-token", "admin", audit.ActionAliasSet, "audited", "audited@live"}, 1, "ok"},
		{row{dep.ID, "deployer", audit.ActionSecretSet, "audited", "API_TOKEN"}, 0, "ok"},
		{row{viewer.ID, "viewer", audit.ActionDelete, "audited", "audited"}, 0, "forbidden"},
		{row{dep.ID, "deployer", audit.ActionDelete, "audited", "audited"}, 0, "ok"},
		{row{"admin-token", "admin", audit.ActionKeyRevoke, "", viewer.ID}, 0, "ok"},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(es), len(want), es)
	}
	for i, e := range es {
		w := want[i]
		got := row{e.Principal, e.Role, e.Action, e.Function, e.Target}
		if got != w.row || e.Version != w.version || e.Outcome != w.outcome || e.Remote == "" || time.Since(e.Time) > time.Minute {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if d := es[0].Detail; !strings.Contains(d, "role deployer") || !strings.Contains(d, "audited") || !strings.Contains(d, `"ci"`) {
		t.Errorf("key.create detail %q", d)
	}
	raw, _ := json.Marshal(es)
	if strings.Contains(string(raw), "tern_k_") || strings.Contains(string(raw), dep.Secret[len(dep.Secret)-20:]) || strings.Contains(string(raw), "s3cr3t") {
		t.Errorf("the audit shows a key: %s", raw)
	}
	fa, err := s.Client.Audit(ctx, client.AuditQuery{Function: "audited"})
	if err != nil || len(fa) != 6 {
		t.Errorf("function audited: %d entries, %v", len(fa), err)
	}
	if _, err := client.New(s.URL(), dep.Secret).Audit(ctx, client.AuditQuery{}); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("deployer reads the audit: %v", err)
	}
	if _, err := s.Client.Audit(ctx, client.AuditQuery{Since: "yesterday"}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("bad since: %v", err)
	}
	if es, err := s.Client.Audit(ctx, client.AuditQuery{Since: "7d", Limit: 2}); err != nil || len(es) != 2 || es[1].Action != audit.ActionKeyRevoke {
		t.Errorf("7d, limit 2: %+v %v", es, err)
	}
}

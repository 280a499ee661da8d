package server_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/testserver"
)

// TestPrivateFunction: auth: key makes an HTTP trigger take only keys
// that may invoke the function, and the key does not reach the function.
func TestPrivateFunction(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	s.Deploy(map[string]string{
		"tern.yaml": "name: private\nruntime: nodejs\nhandler: index.handler\nauth: key\n",
		"index.js":  `exports.handler = async (e) => ({statusCode: 200, body: JSON.stringify(e.headers)});`,
	})
	s.Deploy(fn("public", "index.handler", map[string]string{"index.js": `exports.handler = async () => "ok";`}))
	key := func(role string, fns ...string) string {
		k, err := s.Client.CreateKey(ctx, api.KeyRequest{Role: role, Functions: fns})
		if err != nil {
			t.Fatal(err)
		}
		return k.Secret
	}
	mine, other, viewer := key("invoker", "private"), key("invoker", "public"), key("viewer")
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no key", nil, 401},
		{"a wrong key", map[string]string{"Authorization": "Bearer tern_k_000000000000_nope"}, 401},
		{"another function's key", map[string]string{"X-Tern-Key": other}, 403},
		{"a viewer", map[string]string{"X-Tern-Key": viewer}, 403},
		{"its invoker key", map[string]string{"X-Tern-Key": mine}, 200},
		{"its invoker key as bearer", map[string]string{"Authorization": "Bearer " + mine}, 200},
		{"the admin token", map[string]string{"Authorization": "Bearer " + s.Token()}, 200},
	} {
		status, _, body := s.Do("GET", "/fn/private/x", nil, tc.header)
		if status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
		if status == 200 && (strings.Contains(string(body), mine) || strings.Contains(strings.ToLower(string(body)), "authorization")) {
			t.Errorf("%s: the credential reached the function: %s", tc.name, body)
		}
	}
	if status, _, _ := s.Do("GET", "/fn/public", nil, nil); status != 200 {
		t.Errorf("a public function answered %d", status)
	}
	// A wrong value is refused at deploy.
	if err := deployErr(t, s, map[string]string{"tern.yaml": "name: x\nruntime: nodejs\nhandler: index.handler\nauth: iam\n", "index.js": "exports.handler=1"}); !isStatus(err, 400) {
		t.Errorf("auth: iam: %v", err)
	}
}

// TestRateLimits: a function's rateLimit and each key's limit answer 429
// with Retry-After beyond them; the admin token is not limited per key.
func TestRateLimits(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.KeyRateLimit, cfg.KeyRateBurst = 1, 2
	s := testserver.Start(t, cfg)
	ctx := context.Background()
	s.Deploy(map[string]string{
		"tern.yaml": "name: limited\nruntime: nodejs\nhandler: index.handler\nrateLimit: {rps: 1, burst: 3}\n",
		"index.js":  `exports.handler = async () => "ok";`,
	})
	s.Deploy(fn("free", "index.handler", map[string]string{"index.js": `exports.handler = async () => "ok";`}))
	codes := func(path string, n int, header map[string]string) (ok, limited int, retry string) {
		for range n {
			status, h, _ := s.Do("GET", path, nil, header)
			switch status {
			case 200:
				ok++
			case 429:
				limited++
				retry = h.Get("Retry-After")
			}
		}
		return
	}
	if ok, limited, retry := codes("/fn/limited", 5, nil); ok != 3 || limited != 2 || retry != "1" {
		t.Errorf("function limit: %d ok, %d limited, Retry-After %q; want 3, 2, 1", ok, limited, retry)
	}
	if ok, limited, _ := codes("/fn/free", 5, nil); ok != 5 || limited != 0 {
		t.Errorf("an unlimited function: %d ok, %d limited", ok, limited)
	}
	k, err := s.Client.CreateKey(ctx, api.KeyRequest{Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, limited, retry := codes("/v1/functions", 4, map[string]string{"X-Tern-Key": k.Secret}); ok != 2 || limited != 2 || retry == "" {
		t.Errorf("key limit: %d ok, %d limited, Retry-After %q; want 2, 2", ok, limited, retry)
	}
	if ok, _, _ := codes("/v1/functions", 4, map[string]string{"Authorization": "Bearer " + s.Token()}); ok != 4 {
		t.Errorf("the admin token was limited: %d of 4 ok", ok)
	}
}

// TestErrorDetailsOnlyForKeys: an HTTP trigger answers a function error
// with a bare message and its request id; only a key holder of a
// function that says errorDetails sees the function's error and stack.
func TestErrorDetailsOnlyForKeys(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	const throws = `exports.handler = async () => { throw new Error("db password is hunter2"); };`
	for name, extra := range map[string]string{
		"open":     "",
		"keyed":    "auth: key\n",
		"detailed": "auth: key\nerrorDetails: true\n",
	} {
		s.Deploy(map[string]string{"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\n" + extra, "index.js": throws})
	}
	k, err := s.Client.CreateKey(context.Background(), api.KeyRequest{Role: "invoker"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fn     string
		header map[string]string
		detail bool
	}{
		{"open", nil, false},
		{"open", map[string]string{"X-Tern-Key": k.Secret}, false},
		{"keyed", map[string]string{"X-Tern-Key": k.Secret}, false},
		{"detailed", map[string]string{"X-Tern-Key": k.Secret}, true},
	} {
		status, h, body := s.Do("GET", "/fn/"+tc.fn, nil, tc.header)
		shown := strings.Contains(string(body), "hunter2") && strings.Contains(string(body), "index.js:")
		if status != 502 || shown != tc.detail || h.Get("X-Tern-Request-Id") == "" || h.Get("X-Tern-Error-Type") != "Error" {
			t.Errorf("%s with %v: %d %v %s (want details: %v)", tc.fn, tc.header, status, h, body, tc.detail)
		}
	}
}

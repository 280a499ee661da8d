package cli_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

func TestCLIKeysAndAudit(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())

	code, out, errOut := run(t, "", "keys", "create", "--role", "deployer", "--functions", "a,b", "--expires", "30d", "--name", "ci")
	if code != 0 || !regexp.MustCompile(`^tern_k_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\n$`).MatchString(out) || !strings.Contains(errOut, "will not be shown again") {
		t.Fatalf("keys create: %d %q %q", code, out, errOut)
	}
	key := strings.TrimSpace(out)
	id := strings.Split(key, "_")[2]
	if !strings.Contains(errOut, id) || !strings.Contains(errOut, "role deployer, functions a, b, expires") {
		t.Errorf("keys create summary: %q", errOut)
	}

	code, out, _ = run(t, "", "keys", "ls")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "deployer") || !strings.Contains(out, "a,b") ||
		!strings.Contains(out, "ci") || !strings.Contains(out, "admin-token") || strings.Contains(out, key) {
		t.Errorf("keys ls: %d %q", code, out)
	}
	code, out, _ = run(t, "", "keys", "ls", "-o", "json")
	var rec map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec["id"] != id || rec["role"] != "deployer" {
		t.Errorf("keys ls -o json: %d %q", code, out)
	}
	if _, ok := rec["hash"]; ok || strings.Contains(out, key) {
		t.Errorf("keys ls -o json shows the hash or the key: %q", out)
	}

	// The key works within its role: a deployer may not manage keys.
	code, _, errOut = run(t, "", "--token", key, "keys", "ls")
	if code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Errorf("keys ls as a deployer: %d %q", code, errOut)
	}
	code, out, errOut = run(t, "", "--token", key, "stats", "a")
	if code != 1 || strings.Contains(errOut, "forbidden") || strings.Contains(errOut, "401") {
		t.Errorf("stats a as its deployer: %d %q %q", code, out, errOut)
	}

	code, out, _ = run(t, "", "keys", "revoke", id)
	if code != 0 || out != "revoked key "+id+"\n" {
		t.Errorf("keys revoke: %d %q", code, out)
	}
	if code, out, _ := run(t, "", "keys", "ls"); code != 0 || strings.Contains(out, id) {
		t.Errorf("keys ls after revoking: %d %q", code, out)
	}
	if code, _, errOut := run(t, "", "--token", key, "stats", "a"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("revoked key: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "", "keys", "revoke", id); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("revoking again: %d %q", code, errOut)
	}

	code, out, _ = run(t, "", "audit")
	if code != 0 || !strings.Contains(out, "key.create") || !strings.Contains(out, "key.revoke") || !strings.Contains(out, id) || strings.Contains(out, key) {
		t.Errorf("audit: %d %q", code, out)
	}
	code, out, _ = run(t, "", "audit", "--since", "7d", "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct{ Principal, Action, Target, Outcome string }
	if code != 0 || len(lines) != 3 || json.Unmarshal([]byte(lines[1]), &last) != nil ||
		last != (struct{ Principal, Action, Target, Outcome string }{"admin-token", "key.revoke", id, "ok"}) {
		t.Errorf("audit -o json: %d %q", code, out)
	}
	if code, out, _ := run(t, "", "audit", "--function", "a"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Errorf("audit --function a: %d %q, want the header only", code, out)
	}

	for _, bad := range [][]string{
		{"keys", "create"},
		{"keys", "create", "--role", "root"},
		{"keys", "create", "--role", "viewer", "--expires", "soon"},
		{"keys", "create", "--role", "viewer", "extra"},
		{"keys", "revoke"},
		{"keys", "ls", "-o", "yaml"},
		{"audit", "-o", "xml"},
		{"audit", "--limit", "-1"},
	} {
		if code, _, _ := run(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errOut := run(t, "", "keys", "create", "--role", "invoker", "--functions", "bad name"); code != 1 || !strings.Contains(errOut, "400") {
		t.Errorf("bad function name: %d %q", code, errOut)
	}
}

package python

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall is a smoke test; bootfile's tests cover the installing.
func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runtime")
	p, err := Install(dir)
	if err != nil || p != filepath.Join(dir, FileName) || FileName != "bootstrap.py" {
		t.Fatalf("Install(%s) = %q, %v", dir, p, err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, Bootstrap) {
		t.Errorf("%s holds %d bytes, want the %d of Bootstrap", p, len(got), len(Bootstrap))
	}
}

func TestInterpreter(t *testing.T) {
	p, err := Interpreter()
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(p) {
		t.Errorf("Interpreter() = %q, want an absolute path", p)
	}
	if strings.Contains(p, "/shims/") {
		t.Errorf("Interpreter() = %q, a shim", p)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("Interpreter() = %q: not an executable (%v)", p, err)
	}
	// Cached: no second look-up (with no python3 on PATH it would fail).
	t.Setenv("PATH", t.TempDir())
	p2, err := Interpreter()
	if err != nil || p2 != p {
		t.Errorf("second Interpreter() = %q, %v; want the cached %q", p2, err, p)
	}
}

func TestResolveInterpreterErrors(t *testing.T) {
	if _, err := resolveInterpreter("no-such-python-xyz"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing interpreter: err = %v", err)
	}
	// An "interpreter" that is too old.
	dir := t.TempDir()
	fake := filepath.Join(dir, "oldpython")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho /usr/bin/oldpython\necho 3.8\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveInterpreter(fake); err == nil || !strings.Contains(err.Error(), "3.9 or later") {
		t.Errorf("old interpreter: err = %v", err)
	}
	for _, v := range []string{"3.9", "3.13"} {
		ok := filepath.Join(dir, "py"+v)
		if err := os.WriteFile(ok, []byte("#!/bin/sh\necho /opt/py/bin/python3\necho "+v+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if p, err := resolveInterpreter(ok); err != nil || p != "/opt/py/bin/python3" {
			t.Errorf("python %s: %q, %v", v, p, err)
		}
	}
}

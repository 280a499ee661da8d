package cli_test

import (
	"strings"
	"testing"
)

func TestDoctor(t *testing.T) {
	code, out, errOut := run(t, "", "doctor")
	if code != 0 {
		t.Fatalf("doctor on a host with node and python: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"runtime nodejs: node ≥ 18", "runtime python: python3", "runtime http: /bin/sh", "isolation"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor does not report %q:\n%s", want, out)
		}
	}
	// Without node on PATH, it says so and fails.
	t.Setenv("PATH", t.TempDir())
	code, out, _ = run(t, "", "doctor")
	if code != 1 || !strings.Contains(out, "missing") {
		t.Errorf("doctor without node: exit %d\n%s", code, out)
	}
}

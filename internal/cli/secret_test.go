package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

func TestCLISecrets(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	s.Deploy(map[string]string{
		"tern.yaml": "name: sec\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":  `exports.handler = async () => ({a: process.env.A, b: process.env.B, f: process.env.F, i: process.env.I});`,
	})
	const (
		valA = "value-of-a-1f3e"
		valB = "b=with=equals"
		valF = "from-a-file-9c2d\n"
		valI = "from-stdin-77ab"
	)
	values := []string{valA, "with=equals", "from-a-file-9c2d", valI}
	printed := func(t *testing.T, out ...string) {
		t.Helper()
		for _, o := range out {
			for _, v := range values {
				if strings.Contains(o, v) {
					t.Fatalf("a value was printed: %q", o)
				}
			}
		}
	}

	code, out, errOut := run(t, "", "secret", "set", "sec", "A="+valA, "B="+valB)
	printed(t, out, errOut)
	if code != 0 || out != "set secret A of sec\nset secret B of sec\n" {
		t.Fatalf("set: %d %q %q", code, out, errOut)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte(valF), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, "", "secret", "set", "sec", "F", "--from-file", file); code != 0 || out != "set secret F of sec\n" {
		t.Fatalf("set --from-file: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, valI, "secret", "set", "sec", "I", "--from-file", "-"); code != 0 || out != "set secret I of sec\n" {
		t.Fatalf("set --from-file -: %d %q %q", code, out, errOut)
	}

	code, out, errOut = run(t, "", "invoke", "sec")
	if code != 0 || strings.TrimSpace(out) != `{"a":"value-of-a-1f3e","b":"b=with=equals","f":"from-a-file-9c2d\n","i":"from-stdin-77ab"}` {
		t.Fatalf("invoke: %d %q %q", code, out, errOut)
	}

	code, out, errOut = run(t, "", "secret", "ls", "sec")
	printed(t, out, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], "SECRET") || !strings.HasPrefix(lines[1], "A ") || !strings.HasPrefix(lines[4], "I ") {
		t.Fatalf("ls: %d %q %q", code, out, errOut)
	}

	if code, out, errOut := run(t, "", "secret", "rm", "sec", "B"); code != 0 || out != "removed secret B of sec\n" {
		t.Fatalf("rm: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := run(t, "", "secret", "rm", "sec", "B"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("rm again: %d %q", code, errOut)
	}
	if _, out, _ := run(t, "", "secret", "ls", "sec"); strings.Contains(out, "B ") {
		t.Fatalf("ls after rm: %q", out)
	}

	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", 4097)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no pair", []string{"secret", "set", "sec"}, 2, "usage"},
		{"no key", []string{"secret", "set", "sec", valA}, 2, "want KEY=VALUE"},
		{"empty key", []string{"secret", "set", "sec", "=" + valA}, 2, "want KEY=VALUE"},
		{"twice", []string{"secret", "set", "sec", "A=" + valA, "A=x"}, 2, "twice"},
		{"file and pair", []string{"secret", "set", "sec", "A=" + valA, "--from-file", file}, 2, "usage"},
		{"rm args", []string{"secret", "rm", "sec"}, 2, "accepts 2 arg"},
		{"ls args", []string{"secret", "ls"}, 2, "accepts 1 arg"},
		{"missing file", []string{"secret", "set", "sec", "A", "--from-file", filepath.Join(t.TempDir(), "none")}, 1, "no such file"},
		{"big file", []string{"secret", "set", "sec", "A", "--from-file", big}, 1, "at most 4096 bytes"},
		{"bad name", []string{"secret", "set", "sec", "NOT-A-NAME=" + valA}, 1, "must match"},
		{"reserved name", []string{"secret", "set", "sec", "_HANDLER=" + valA}, 1, "reserved"},
		{"no function", []string{"secret", "set", "nope", "A=" + valA}, 1, "function not found"},
		{"ls no function", []string{"secret", "ls", "nope"}, 1, "function not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, "", c.args...)
			printed(t, out, errOut)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d (want %d), out %q, err %q (want %q)", code, c.code, out, errOut, c.want)
			}
		})
	}
}

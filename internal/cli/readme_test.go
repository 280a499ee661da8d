package cli_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

// TestReadmeQuickStart runs the README's quick start: the function it
// writes, the curl and the tern invoke it shows, each with the output
// its comment says.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	find := func(re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(string(readme))
		if m == nil {
			t.Fatalf("README.md has no match for %s", re)
		}
		return m
	}
	manifest := find(`(?s)cat > tern\.yaml <<'YAML'\n(.*?\n)YAML\n`)[1]
	handler := find(`(?m)^echo '(.*)' > index\.js$`)[1]
	curl := find(`(?m)^curl localhost:8080(/fn/\S+)\s+# (.*)$`)
	invoke := find(`(?m)^\.\./tern invoke hello --data '(.*)'\s+# (.*)$`)

	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	dir := testserver.WriteFunction(t, map[string]string{"tern.yaml": manifest, "index.js": handler})
	if code, stdout, errOut := run(t, "", "deploy", dir); code != 0 || !strings.Contains(stdout, "deployed hello version 1") {
		t.Fatalf("deploy: %d %q %q", code, stdout, errOut)
	}
	if status, _, body := s.Do("GET", curl[1], nil, nil); status != 200 || string(body) != curl[2] {
		t.Errorf("curl %s: %d %q, the README says %q", curl[1], status, body, curl[2])
	}
	code, stdout, errOut := run(t, "", "invoke", "hello", "--data", invoke[1])
	if code != 0 || strings.TrimSpace(stdout) != invoke[2] {
		t.Errorf("tern invoke hello --data %s: %d %q %q, the README says %q", invoke[1], code, stdout, errOut, invoke[2])
	}
}

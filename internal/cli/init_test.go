package cli_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/testserver"
)

// goSumGolden is the server tests' go.sum for aws-lambda-go, found before
// any test changes the working directory.
var goSumGolden, _ = filepath.Abs(filepath.Join("..", "server", "testdata", "lambdago", "go.sum.golden"))

// buildBootstrap builds the aws-lambda-go function in dir (main.go and
// go.mod) into dir/bootstrap, a static linux executable, as one is packaged
// for Lambda's provided runtimes. The go.sum is the server tests' golden
// one, so the build verifies what the module proxy serves without asking a
// checksum database.
func buildBootstrap(t *testing.T, dir string) {
	t.Helper()
	sum, err := os.ReadFile(goSumGolden)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-tags", "lambda.norpc", "-o", "bootstrap", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the aws-lambda-go function in %s: %v\n%s", dir, err, out)
	}
}

// builtIgnored checks that what the build made in built, a copy of src,
// is ignored by git in src: the files the example's README build writes
// into the checkout.
func builtIgnored(t *testing.T, src, built string) {
	t.Helper()
	if err := exec.Command("git", "-C", src, "rev-parse").Run(); err != nil {
		t.Logf("not a git checkout: %v", err)
		return
	}
	for _, f := range listFiles(t, built) {
		if _, err := os.Stat(filepath.Join(src, filepath.FromSlash(f))); err == nil {
			continue
		}
		if err := exec.Command("git", "-C", src, "check-ignore", "-q", f).Run(); err != nil {
			t.Errorf("the build writes %s into %s, which git does not ignore", f, src)
		}
	}
}

// listFiles returns the regular files under dir, slash-separated and sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// copyDir copies the regular files of src into a new temp folder.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range listFiles(t, src) {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestCLIInit(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	root := t.TempDir()
	t.Chdir(root) // the folder defaults to ./NAME

	for _, c := range []struct {
		name  string
		flags []string
		files []string
		want  string // in the answer to GET /fn/NAME/p
		build bool   // go: build the bootstrap first
	}{
		{"node-fn", nil, []string{"README.md", "index.js", "tern.yaml"}, `{"hello":"node-fn","path":"/p"}`, false},
		{"express-fn", []string{"--runtime", "nodejs", "--style", "http"}, []string{"README.md", "index.js", "tern.yaml"}, `{"hello":"express-fn","method":"GET","path":"/p","query":{}}`, false},
		{"py_fn", []string{"--runtime", "python"}, []string{"README.md", "app.py", "tern.yaml"}, `{"hello": "py_fn", "path": "/p"}`, false},
		{"web-fn", []string{"--runtime", "http"}, []string{"README.md", "server.js", "tern.yaml"}, `{"hello":"web-fn","method":"GET","url":"/p"}`, false},
		{"go-fn", []string{"--runtime", "go"}, []string{".ternignore", "README.md", "go.mod", "main.go", "tern.yaml"}, `{"hello":"go-fn","path":"/p"}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"init", c.name}, c.flags...)
			code, out, errOut := run(t, "", args...)
			if code != 0 || !strings.Contains(out, "created") || !strings.Contains(out, "next:") {
				t.Fatalf("init: %d %q %q", code, out, errOut)
			}
			dir := filepath.Join(root, c.name)
			if got := listFiles(t, dir); strings.Join(got, " ") != strings.Join(c.files, " ") {
				t.Fatalf("files %v, want %v", got, c.files)
			}
			b, err := os.ReadFile(filepath.Join(dir, manifest.FileName))
			if err != nil {
				t.Fatal(err)
			}
			if m, err := manifest.Parse(b); err != nil || m.Name != c.name {
				t.Fatalf("tern.yaml: %+v %v", m, err)
			}
			readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil || !strings.Contains(string(readme), "tern deploy "+c.name+" && curl localhost:8080/fn/"+c.name) ||
				c.build != strings.Contains(string(readme), "-o bootstrap") {
				t.Errorf("README.md: %q %v", readme, err)
			}
			if c.build {
				if !strings.Contains(string(readme), "(cd "+c.name+" && go mod tidy") {
					t.Errorf("README.md does not say how to build: %q", readme)
				}
				buildBootstrap(t, dir)
			}
			if code, out, errOut := run(t, "", "deploy", c.name); code != 0 {
				t.Fatalf("deploy: %d %q %q", code, out, errOut)
			}
			status, _, body := s.Do("GET", "/fn/"+c.name+"/p", nil, nil)
			if status != 200 || strings.TrimSpace(string(body)) != c.want {
				t.Errorf("GET /fn/%s/p: %d %s, want %s", c.name, status, body, c.want)
			}
			if status, _, body := s.Do("GET", "/fn/"+c.name, nil, nil); status != 200 || !strings.Contains(string(body), c.name) {
				t.Errorf("GET /fn/%s: %d %s", c.name, status, body)
			}
			// Never overwrites: a second init changes nothing.
			before, _ := os.ReadFile(filepath.Join(dir, manifest.FileName))
			if code, _, errOut := run(t, "", args...); code != 1 || !strings.Contains(errOut, "already exists") {
				t.Errorf("second init: %d %q", code, errOut)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, manifest.FileName)); string(after) != string(before) {
				t.Errorf("tern.yaml overwritten: %q", after)
			}
		})
	}

	t.Run("provided is go", func(t *testing.T) {
		code, out, errOut := run(t, "", "init", "legacy", "--runtime", "provided", "--dir", filepath.Join(root, "sub", "legacy"))
		if code != 0 || !strings.Contains(out, "main.go") {
			t.Fatalf("init provided: %d %q %q", code, out, errOut)
		}
		b, err := os.ReadFile(filepath.Join(root, "sub", "legacy", "go.mod"))
		if err != nil || !strings.Contains(string(b), "require github.com/aws/aws-lambda-go v1.55.1") {
			t.Errorf("go.mod: %q %v", b, err)
		}
		b, _ = os.ReadFile(filepath.Join(root, "sub", "legacy", "tern.yaml"))
		if string(b) != "name: legacy\nruntime: provided\n" {
			t.Errorf("tern.yaml: %q", b)
		}
	})
	t.Run("--dir", func(t *testing.T) {
		dir := filepath.Join(root, "elsewhere")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := run(t, "", "init", "placed", "--dir", dir); code != 0 {
			t.Fatalf("init --dir: %d %q %q", code, out, errOut)
		}
		if got := strings.Join(listFiles(t, dir), " "); got != "README.md index.js notes.txt tern.yaml" {
			t.Errorf("files: %s", got)
		}
		if _, err := os.Stat(filepath.Join(root, "placed")); err == nil {
			t.Errorf("./placed was created too")
		}
	})

	for _, c := range []struct {
		what string
		args []string
		want string
	}{
		{"no name", []string{"init"}, "accepts 1 arg"},
		{"two names", []string{"init", "a", "b"}, "accepts 1 arg"},
		{"bad name", []string{"init", "bad name!"}, "name"},
		{"leading dash", []string{"init", "_x"}, "name"},
		{"long name", []string{"init", strings.Repeat("n", 65)}, "name"},
		{"unknown runtime", []string{"init", "x", "--runtime", "cobol"}, "--runtime"},
		{"internal key", []string{"init", "x", "--runtime", "nodejs-http"}, "--runtime"},
		{"style for python", []string{"init", "x", "--runtime", "python", "--style", "http"}, "--style"},
		{"unknown style", []string{"init", "x", "--style", "grpc"}, "--style"},
	} {
		t.Run(c.what, func(t *testing.T) {
			code, _, errOut := run(t, "", c.args...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
		t.Errorf("a usage error created a folder")
	}
}

// TestExamples deploys every folder under examples/ and calls it over HTTP:
// each answers 200 with JSON whose "example" is its folder's name.
func TestExamples(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	root := filepath.Join("..", "..", "examples")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // function name → folder
	var folders []string
	for _, e := range entries {
		if e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	want := []string{"go", "http-node", "node-esm", "node-express", "node-lambda", "python"}
	for _, w := range want {
		if !slices.Contains(folders, w) {
			t.Errorf("examples/%s is missing", w)
		}
	}
	for _, folder := range folders {
		t.Run(folder, func(t *testing.T) {
			dir := filepath.Join(root, folder)
			b, err := os.ReadFile(filepath.Join(dir, manifest.FileName))
			if err != nil {
				t.Fatal(err)
			}
			m, err := manifest.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if other, ok := names[m.Name]; ok {
				t.Fatalf("name %q is also examples/%s's", m.Name, other)
			}
			names[m.Name] = folder
			readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
			if err != nil || !strings.Contains(string(readme), "tern deploy examples/"+folder+" && curl localhost:8080/fn/"+m.Name) {
				t.Errorf("README.md: %q %v", readme, err)
			}
			if m.Runtime == "provided" {
				if _, err := os.Stat(filepath.Join(dir, "bootstrap")); err == nil {
					t.Errorf("examples/%s/bootstrap is committed; the test builds it", folder)
				}
				src := dir
				dir = copyDir(t, dir)
				buildBootstrap(t, dir)
				builtIgnored(t, src, dir)
			}
			s.DeployDir(dir)
			status, _, body := s.Do("GET", "/fn/"+m.Name+"/hi?x=1", nil, nil)
			var got map[string]any
			if status != 200 || json.Unmarshal(body, &got) != nil || got["example"] != folder {
				t.Fatalf("GET /fn/%s/hi: %d %s", m.Name, status, body)
			}
			t.Logf("%s: %s", m.Name, body)
		})
	}
}

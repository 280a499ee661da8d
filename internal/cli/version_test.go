package cli_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionNamesTheCommit builds the real binary with VCS stamping (the
// environment may turn it off with GOFLAGS=-buildvcs=false) and checks that
// `tern version` names the checkout's commit and the build date.
func TestVersionNamesTheCommit(t *testing.T) {
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", args...).Output()
		if err != nil {
			t.Skipf("not in a git checkout: git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	commit := git("rev-parse", "HEAD")
	if len(commit) < 12 {
		t.Fatalf("git rev-parse HEAD: %q", commit)
	}
	src := git("rev-parse", "--show-toplevel")
	if git("rev-parse", "--absolute-git-dir") != git("rev-parse", "--path-format=absolute", "--git-common-dir") {
		// A linked worktree: its .git is a file, which go build does not
		// take for a repository (golang/go#58218), so it stamps no commit.
		// Build HEAD from a clone instead.
		clone := filepath.Join(t.TempDir(), "src")
		if out, err := exec.Command("git", "clone", "--quiet", "--shared", src, clone).CombinedOutput(); err != nil {
			t.Fatalf("cloning the worktree: %v\n%s", err, out)
		}
		t.Logf("a linked worktree: building HEAD from a clone, without uncommitted changes")
		src = clone
	}
	bin := filepath.Join(t.TempDir(), "tern")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/tern")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("tern version: %v\n%s", err, out)
	}
	line := string(out)
	if !strings.HasPrefix(line, "tern ") || !strings.Contains(line, "commit "+commit[:12]) || !strings.Contains(line, ", built 20") {
		t.Errorf("tern version = %q; want the commit %s and the build date", line, commit[:12])
	}
}

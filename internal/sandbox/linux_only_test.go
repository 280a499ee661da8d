package sandbox_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBuildForAnotherSystemSaysLinuxOnly builds tern for systems it does
// not run on: the build fails, and its first error names the reason.
func TestBuildForAnotherSystemSaysLinuxOnly(t *testing.T) {
	for _, goos := range []string{"darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "build", "-o", os.DevNull, "github.com/ternhq/tern/cmd/tern")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("GOOS=%s go build succeeded", goos)
			}
			var first string
			for _, line := range strings.Split(string(out), "\n") {
				if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "go: downloading") {
					first = line
					break
				}
			}
			if !strings.Contains(first, "undefined: tern_runs_on_linux_only") {
				t.Errorf("GOOS=%s go build: first error %q, want tern_runs_on_linux_only\n%s", goos, first, out)
			}
		})
	}
}

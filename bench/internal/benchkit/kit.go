// Package benchkit is what the benchmark commands under bench/ share:
// starting and stopping processes (tern serve, the baselines), the
// closed-loop load generator, CPU and memory readings from /proc, and the
// facts about the machine that a report names.
package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Logf prints a progress line on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// ModuleRoot finds the directory of the tern module's go.mod, from the
// working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ternhq/tern\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run this from inside the tern module (github.com/ternhq/tern)")
		}
		dir = parent
	}
}

// GoBuild runs `go build -o out pkg` in the module root.
func GoBuild(ctx context.Context, root, out, pkg string) error {
	Logf("building %s: go build -o %s %s", pkg, out, pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Warnings returns the WARN and ERROR lines of a tern serve log.
func Warnings(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// Ms formats d in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Us formats d in microseconds.
func Us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// Sorted returns a sorted copy.
func Sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// CommandLine is how this program was run, as `go run PKG args...`.
func CommandLine(pkg string) string {
	parts := []string{"go", "run", pkg}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$`\\") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// LoadAvg is the 1, 5 and 15 minute load average: other work on the
// machine skews every number.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Nproc is what nproc(1) says.
func Nproc() string {
	if out, err := exec.Command("nproc").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return strconv.Itoa(runtime.NumCPU())
}

// CPUModel is the first "model name" in /proc/cpuinfo.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// Kernel is "Linux <release>".
func Kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// MemMiB is the machine's RAM.
func MemMiB() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) >> 20
}

// GitRev is the module's commit and whether the code tern is built from
// differs from it (read-only git commands).
func GitRev(root string) string {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "(unknown commit)"
	}
	src := []string{"--", "cmd", "internal", "go.mod", "go.sum"}
	var changed []string
	if out, err := git(append([]string{"diff", "--name-only", "HEAD"}, src...)...); err == nil && out != "" {
		changed = append(changed, strings.Fields(out)...)
	}
	if out, err := git(append([]string{"ls-files", "--others", "--exclude-standard"}, src...)...); err == nil {
		changed = append(changed, strings.Fields(out)...)
	}
	var built []string
	for _, f := range changed {
		if !strings.HasSuffix(f, "_test.go") { // tests are not in the binary
			built = append(built, f)
		}
	}
	if len(built) > 0 {
		return "commit " + rev + " + uncommitted changes to " + strings.Join(built, ", ")
	}
	return "commit " + rev
}

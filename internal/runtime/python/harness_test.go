package python

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// python returns the real interpreter, resolved once for the whole run.
func python(t testing.TB) string {
	t.Helper()
	p, err := Interpreter()
	if err != nil {
		t.Fatalf("no usable python3: %v", err)
	}
	return p
}

var pyVersion = sync.OnceValues(func() (string, error) {
	p, err := Interpreter()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(p, "-c", `import sys; print("%d.%d" % sys.version_info[:2])`).Output()
	return strings.TrimSpace(string(out)), err
})

// sitePackages is the layer-style site-packages folder for this python,
// relative to a task root.
func sitePackages(t testing.TB) string {
	t.Helper()
	v, err := pyVersion()
	if err != nil {
		t.Fatal(err)
	}
	return "python/lib/python" + v + "/site-packages"
}

// startFramed writes files into a fresh task root and starts the bootstrap
// as Tern starts a pooled instance (framedtest.Start), its stdout going to
// stdout if not nil. It checks that BOOTED comes first; nothing is sent.
func startFramed(t testing.TB, files map[string]string, stdout *os.File) *framedtest.Runtime {
	t.Helper()
	py := python(t)
	taskRoot, cwd, bootstrap := framedtest.Prepare(t, files, Install)
	env := []string{"PATH=" + os.Getenv("PATH"), "TZ=:UTC", "LANG=C.UTF-8"}
	return framedtest.Start(t, py, []string{bootstrap}, cwd, env, &framedtest.Options{TaskRoot: taskRoot, Stdout: stdout})
}

// startReady starts a bootstrap, specialises it for handler with the given
// concurrency (0: not sent) and waits for READY.
func startReady(t testing.TB, handler string, files map[string]string, extraEnv map[string]string, concurrency int) *framedtest.Runtime {
	t.Helper()
	f := startFramed(t, files, nil)
	f.SpecializeReady(t, handler, extraEnv, concurrency)
	return f
}

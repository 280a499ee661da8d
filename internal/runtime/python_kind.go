package runtime

import (
	"fmt"
	"path/filepath"

	"github.com/ternhq/tern/internal/runtime/python"
)

// addPython registers the python runtime: the real interpreter behind
// python3 (a pyenv shim would cost ~75 ms per start) and the embedded
// bootstrap, run with -B so that no __pycache__ is written into code
// folders.
func (l *Launcher) addPython() error {
	boot, err := python.Install(filepath.Join(l.cfg.Dir, "python"))
	if err != nil {
		return fmt.Errorf("runtime: install python bootstrap: %w", err)
	}
	interp, err := python.Interpreter()
	missing := ""
	if err != nil {
		interp, missing = "", err.Error()
	}
	l.add("python", interp, []string{"-B", boot}, missing)
	return nil
}

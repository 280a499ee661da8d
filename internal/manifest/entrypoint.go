package manifest

import (
	"fmt"
	"strings"
)

// CheckEntryPoint reports, as a *FieldError on handler, an entry point the
// package does not have: the handler's module file for nodejs and python,
// an executable bootstrap for provided. files maps the package's file paths
// to whether they are executable. What cannot be seen in the files (the
// exported function) is checked when the handler loads.
func (m *Manifest) CheckEntryPoint(files map[string]bool) error {
	switch m.Runtime {
	case "nodejs":
		mod := modulePath(m.Handler)
		for _, ext := range []string{".js", ".mjs", ".cjs"} {
			if _, ok := files[mod+ext]; ok {
				return nil
			}
		}
		return &FieldError{Field: "handler", Message: fmt.Sprintf("%q: the package has no %s.js, %s.mjs or %s.cjs (Runtime.ImportModuleError)", m.Handler, mod, mod, mod)}
	case "python":
		mod := modulePath(m.Handler)
		// "pkg.sub.module.function": the module is everything before the
		// last dot, a dotted path of packages.
		if i := strings.LastIndexByte(m.Handler, '.'); i > 0 && !strings.Contains(m.Handler[strings.LastIndexByte(m.Handler, '/')+1:i], "/") {
			mod = strings.ReplaceAll(m.Handler[:i], ".", "/")
		}
		for _, root := range []string{"", "python/"} {
			if _, ok := files[root+mod+".py"]; ok {
				return nil
			}
			if _, ok := files[root+mod+"/__init__.py"]; ok {
				return nil
			}
		}
		return &FieldError{Field: "handler", Message: fmt.Sprintf("%q: the package has no %s.py (Runtime.ImportModuleError)", m.Handler, mod)}
	case "provided":
		exec, ok := files["bootstrap"]
		switch {
		case !ok:
			return &FieldError{Field: "runtime", Message: "provided: the package has no file named bootstrap at its root (Runtime.InvalidEntrypoint)"}
		case !exec:
			return &FieldError{Field: "runtime", Message: "provided: bootstrap is not executable (chmod +x it before deploying)"}
		}
	}
	return nil
}

// modulePath is the handler's module as a slash path: up to the first dot
// after the last slash.
func modulePath(handler string) string {
	slash := strings.LastIndexByte(handler, '/')
	if dot := strings.IndexByte(handler[slash+1:], '.'); dot >= 0 {
		return handler[:slash+1+dot]
	}
	return handler
}

package manifest

import (
	"errors"
	"testing"
)

func TestCheckEntryPoint(t *testing.T) {
	files := map[string]bool{
		"index.js": false, "src/app.mjs": false, "lib/h.cjs": false,
		"app.py": false, "pkg/sub/mod.py": false, "pkgdir/__init__.py": false, "python/vend.py": false,
		"bootstrap": true, "notexec": false,
	}
	cases := []struct {
		runtime, handler string
		files            map[string]bool
		wantField        string // "" for no error
	}{
		{"nodejs", "index.handler", files, ""},
		{"nodejs", "src/app.handler", files, ""},
		{"nodejs", "lib/h.api.handler", files, ""},
		{"nodejs", "missing.handler", files, "handler"},
		{"python", "app.handler", files, ""},
		{"python", "pkg.sub.mod.handler", files, ""},
		{"python", "pkgdir.handler", files, ""},
		{"python", "vend.handler", files, ""},
		{"python", "nope.handler", files, "handler"},
		{"provided", "bootstrap", files, ""},
		{"provided", "bootstrap", map[string]bool{"notexec": false}, "runtime"},
		{"provided", "bootstrap", map[string]bool{"bootstrap": false}, "runtime"},
		{"http", "command", map[string]bool{}, ""},
	}
	for _, c := range cases {
		m := &Manifest{Runtime: c.runtime, Handler: c.handler}
		err := m.CheckEntryPoint(c.files)
		var fe *FieldError
		switch {
		case c.wantField == "" && err != nil:
			t.Errorf("%s %s: %v", c.runtime, c.handler, err)
		case c.wantField != "" && (!errors.As(err, &fe) || fe.Field != c.wantField):
			t.Errorf("%s %s: %v, want a %s error", c.runtime, c.handler, err, c.wantField)
		}
	}
}

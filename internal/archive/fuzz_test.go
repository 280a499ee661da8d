package archive

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzInspect feeds arbitrary bytes to the package validation: it must
// never panic, and what it accepts must extract inside its folder only.
func FuzzInspect(f *testing.F) {
	for _, entries := range [][][2]string{
		{{"tern.yaml", "name: x\n"}, {"index.js", "exports.handler = 1"}},
		{{"tern.yaml", "name: x\n"}, {"../escape.js", "x"}},
		{{"tern.yaml", "name: x\n"}, {"/abs.js", "x"}},
		{{"tern.yaml", "x"}, {"a/b/c.txt", strings.Repeat("z", 1000)}},
	} {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, e := range entries {
			w, err := zw.Create(e[0])
			if err != nil {
				f.Fatal(err)
			}
			_, _ = w.Write([]byte(e[1]))
		}
		if err := zw.Close(); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	lim := Limits{MaxBytes: 1 << 20, MaxExpandedBytes: 4 << 20, MaxEntries: 200}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if _, err := Inspect(r, int64(len(data)), lim); err != nil {
			return
		}
		root := t.TempDir()
		dest := filepath.Join(root, "code")
		if err := Extract(r, int64(len(data)), dest, lim); err != nil {
			return // a package can still fail to extract (e.g. a file and a folder of one name)
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != root && path != dest && !strings.HasPrefix(path, dest+string(filepath.Separator)) {
				t.Errorf("extracted outside the folder: %s", path)
			}
			if d.Type()&fs.ModeSymlink != 0 {
				target, err := filepath.EvalSymlinks(path)
				if err == nil && !strings.HasPrefix(target, dest) {
					t.Errorf("link %s points outside: %s", path, target)
				}
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	})
}

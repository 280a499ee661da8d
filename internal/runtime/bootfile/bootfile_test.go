package bootfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstall(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
	}{
		{"bootstrap.cjs", []byte("'use strict';\nconsole.log('boot');\n")},
		{"bootstrap.py", []byte("import sys\nprint('boot', file=sys.stderr)\n")},
		{"empty", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a", "b")
			p, err := Install(dir, tc.name, tc.content)
			if err != nil {
				t.Fatal(err)
			}
			if p != filepath.Join(dir, tc.name) {
				t.Fatalf("path = %s", p)
			}
			wantInstalled(t, p, tc.content)
			dst, err := os.Stat(dir)
			if err != nil || dst.Mode().Perm() != 0o755 {
				t.Fatalf("dir mode = %v (err %v)", dst.Mode().Perm(), err)
			}

			// Identical file: left alone.
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
			if _, err := Install(dir, tc.name, tc.content); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(p); !st.ModTime().Equal(old) {
				t.Fatalf("identical file rewritten")
			}

			// Different file, of another size or of the same size: replaced.
			for _, stale := range [][]byte{[]byte("stale"), bytes.Repeat([]byte("x"), len(tc.content))} {
				if bytes.Equal(stale, tc.content) {
					continue
				}
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, stale, 0o644); err != nil {
					t.Fatal(err)
				}
				if _, err := Install(dir, tc.name, tc.content); err != nil {
					t.Fatal(err)
				}
				wantInstalled(t, p, tc.content)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("leftover files: %v", entries)
			}
		})
	}
}

// wantInstalled checks that p holds content with mode 0444.
func wantInstalled(t *testing.T, p string, content []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content = %q (err %v), want %q", got, err, content)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o444 {
		t.Fatalf("mode = %v, want 0444", st.Mode().Perm())
	}
}

func TestInstallFails(t *testing.T) {
	// dir is a file: nothing can be installed in it, and nothing is left.
	parent := t.TempDir()
	file := filepath.Join(parent, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(file, "bootstrap.cjs", []byte("x")); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("Install into a file: err = %v, want one naming %s", err, file)
	}
	// The destination is a directory: the rename fails and the temporary
	// file goes.
	dir := filepath.Join(parent, "d")
	if err := os.MkdirAll(filepath.Join(dir, "bootstrap.py", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir, "bootstrap.py", []byte("x")); err == nil {
		t.Error("Install over a non-empty directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
}

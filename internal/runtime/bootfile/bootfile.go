// Package bootfile installs a runtime's bootstrap script, the file a
// runtime process is started with, into a directory on disk.
package bootfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// Install writes content to dir/name, creating dir (mode 0755) if needed,
// and returns the file's path. An existing regular file with identical
// content is left alone; otherwise the file is replaced atomically (a
// temporary file in dir, renamed over it) with mode 0444, so a process
// starting meanwhile sees the old file or the new one, never a part.
//
// Errors are the os package's, which name the path; callers add their own
// context.
func Install(dir, name string, content []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, name)
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() && st.Size() == int64(len(content)) {
		if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, content) {
			return dst, nil
		}
	}

	// .bootstrap-*.cjs.tmp for bootstrap.cjs: hidden, and not mistaken for
	// the script itself.
	ext := filepath.Ext(name)
	tmp, err := os.CreateTemp(dir, "."+strings.TrimSuffix(name, ext)+"-*"+ext+".tmp")
	if err != nil {
		return "", err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(content); err != nil {
		return "", err
	}
	if err := tmp.Chmod(0o444); err != nil {
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return "", err
	}
	ok = true
	return dst, nil
}

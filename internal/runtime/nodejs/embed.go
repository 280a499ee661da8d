package nodejs

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// Bootstrap is the Node.js runtime client script (bootstrap.cjs).
//
//go:embed bootstrap.cjs
var Bootstrap []byte

// FileName is the name Install gives the bootstrap inside its directory.
const FileName = "bootstrap.cjs"

// Install writes Bootstrap to dir/bootstrap.cjs, creating dir (mode 0755) if
// needed, and returns the file's path. An existing file with identical
// content is left alone; otherwise the file is replaced atomically (a
// temporary file in dir renamed over it) with mode 0444.
func Install(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	dst := filepath.Join(dir, FileName)
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() && st.Size() == int64(len(Bootstrap)) {
		if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, Bootstrap) {
			return dst, nil
		}
	}

	tmp, err := os.CreateTemp(dir, ".bootstrap-*.cjs.tmp")
	if err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(Bootstrap); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	ok = true
	return dst, nil
}

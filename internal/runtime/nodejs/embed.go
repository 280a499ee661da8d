package nodejs

import (
	_ "embed"
	"fmt"

	"github.com/ternhq/tern/internal/runtime/bootfile"
)

// Bootstrap is the Node.js runtime client script (bootstrap.cjs).
//
//go:embed bootstrap.cjs
var Bootstrap []byte

// FileName is the name Install gives the bootstrap inside its directory.
const FileName = "bootstrap.cjs"

// Install writes Bootstrap to dir/bootstrap.cjs as [bootfile.Install] does
// (dir created if needed; replaced atomically, mode 0444, unless already
// identical) and returns the file's path.
func Install(dir string) (string, error) {
	p, err := bootfile.Install(dir, FileName, Bootstrap)
	if err != nil {
		return "", fmt.Errorf("nodejs: install bootstrap: %w", err)
	}
	return p, nil
}

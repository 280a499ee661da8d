package archive

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
)

// Extract validates the archive again and writes it into dest, which must
// not exist yet (the error then matches fs.ErrExist). The parent of dest is
// created if needed. The package is written into a sibling temporary
// directory that is synced and renamed into place, so a crash never leaves a
// half-extracted dest, and on error nothing is left behind.
//
// Files get mode 0444, or 0555 when the zip entry has any exec bit;
// directories get 0755; symlinks are recreated (they were validated to stay
// inside). Uncompressed bytes are counted while writing; header sizes are
// never trusted.
func Extract(r io.ReaderAt, size int64, dest string, lim Limits) (err error) {
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("archive: extract: %s: %w", dest, fs.ErrExist)
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("archive: extract: %w", err)
	}
	p, err := open(r, size, lim)
	if err != nil {
		return err
	}

	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("archive: extract: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dest)+".extract-*")
	if err != nil {
		return fmt.Errorf("archive: extract: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	x := &extractor{p: p, root: tmp, made: map[string]bool{".": true}, dirs: []string{tmp}}
	if err := x.run(); err != nil {
		if _, ok := err.(*Error); ok {
			return err
		}
		return fmt.Errorf("archive: extract: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("archive: extract: %w", err)
	}
	// Make the contents durable before they become visible under dest.
	for _, d := range x.dirs {
		if err := syncPath(d); err != nil {
			return fmt.Errorf("archive: extract: %w", err)
		}
	}
	// Narrow the window in which rename could replace an empty directory
	// created by someone else meanwhile.
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("archive: extract: %s: %w", dest, fs.ErrExist)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("archive: extract: %w", err)
	}
	// The rename itself is durable once the parent is synced. Failing here
	// would be misleading: dest is complete.
	_ = syncPath(parent)
	return nil
}

type extractor struct {
	p    *pkg
	root string
	made map[string]bool // directories created, by cleaned slash path
	dirs []string        // created directories, to sync
}

func (x *extractor) run() error {
	// Directories first, then files, then symlinks: no write ever happens
	// below a link, and files are opened with O_EXCL so they cannot follow
	// one either.
	for _, e := range x.p.entries {
		if e.kind == kindDir {
			if err := x.mkdir(e.name); err != nil {
				return err
			}
		}
	}
	for _, e := range x.p.entries {
		if e.kind == kindFile {
			if err := x.writeFile(e); err != nil {
				return err
			}
		}
	}
	for _, e := range x.p.entries {
		if e.kind == kindLink {
			if err := x.mkdir(path.Dir(e.name)); err != nil {
				return err
			}
			if err := os.Symlink(e.target, x.path(e.name)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (x *extractor) path(name string) string {
	return filepath.Join(x.root, filepath.FromSlash(name))
}

func (x *extractor) mkdir(name string) error {
	if x.made[name] {
		return nil
	}
	if err := x.mkdir(path.Dir(name)); err != nil {
		return err
	}
	p := x.path(name)
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(p, 0o755); err != nil { // whatever the umask
		return err
	}
	x.made[name] = true
	x.dirs = append(x.dirs, p)
	return nil
}

func (x *extractor) writeFile(e *entry) error {
	if err := x.mkdir(path.Dir(e.name)); err != nil {
		return err
	}
	f, err := os.OpenFile(x.path(e.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := x.p.copyEntry(f, e, -1); err != nil {
		return err
	}
	mode := fs.FileMode(0o444)
	if e.exec {
		mode = 0o555
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncPath(p string) error {
	if runtime.GOOS == "windows" { // directories cannot be synced there
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

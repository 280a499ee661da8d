package archive

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// IgnoreFile is the name of the file, at the root of a function folder, that
// lists what Build leaves out.
const IgnoreFile = ".ternignore"

// buildTime is the modification time of every entry Build writes.
var buildTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// BuildStats summarises what Build wrote: Files counts regular files and
// symlinks (not directories), Bytes their uncompressed contents.
type BuildStats struct {
	Files int
	Bytes int64
}

type buildEntry struct {
	rel    string // slash path relative to dir
	kind   kind
	exec   bool
	target string
}

// Build zips the function folder dir into w deterministically: entries are
// sorted, every entry has the same modification time (1980-01-01) and
// permissions are normalised (files 0644 or 0755, directories 0755), so the
// same folder always gives the same bytes. Anything named ".git" and what
// dir/.ternignore lists are left out.
//
// Symlinks are stored as symlinks when they stay inside dir (by the rules
// Inspect applies); otherwise Build fails naming the link. Other file types
// are an error, as are names Inspect would refuse. On error, w may have
// received a partial archive.
func Build(dir string, w io.Writer) (BuildStats, error) {
	var st BuildStats
	fi, err := os.Stat(dir)
	if err != nil {
		return st, fmt.Errorf("archive: build: %w", err)
	}
	if !fi.IsDir() {
		return st, fmt.Errorf("archive: build: %s is not a directory", dir)
	}
	ign, err := loadIgnore(dir)
	if err != nil {
		return st, err
	}
	var list []buildEntry
	if err := collect(dir, ".", ign, &list); err != nil {
		return st, err
	}
	slices.SortFunc(list, func(a, b buildEntry) int { return strings.Compare(a.rel, b.rel) })

	zw := zip.NewWriter(w)
	for _, e := range list {
		if err := writeEntry(zw, dir, e, &st); err != nil {
			return st, err
		}
	}
	if err := zw.Close(); err != nil {
		return st, fmt.Errorf("archive: build: %w", err)
	}
	return st, nil
}

func collect(root, rel string, ign *ignorer, out *[]buildEntry) error {
	des, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return fmt.Errorf("archive: build: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if name == ".git" {
			continue
		}
		r := name
		if rel != "." {
			r = rel + "/" + name
		}
		typ := de.Type()
		if ign.ignored(r, typ.IsDir()) {
			continue
		}
		if _, reason := cleanName(r); reason != "" {
			return fmt.Errorf("archive: build: %q: %s", r, reason)
		}
		full := filepath.Join(root, filepath.FromSlash(r))
		switch {
		case typ.IsDir():
			*out = append(*out, buildEntry{rel: r, kind: kindDir})
			if err := collect(root, r, ign, out); err != nil {
				return err
			}
		case typ&fs.ModeSymlink != 0:
			t, err := os.Readlink(full)
			if err != nil {
				return fmt.Errorf("archive: build: %w", err)
			}
			target := filepath.ToSlash(t)
			if reason := checkLinkTarget(r, target); reason != "" {
				return fmt.Errorf("archive: build: symlink %q must point inside the function folder: %s (target %q)", r, reason, t)
			}
			*out = append(*out, buildEntry{rel: r, kind: kindLink, target: target})
		case typ.IsRegular():
			info, err := de.Info()
			if err != nil {
				return fmt.Errorf("archive: build: %w", err)
			}
			*out = append(*out, buildEntry{rel: r, kind: kindFile, exec: info.Mode()&0o111 != 0})
		default:
			return fmt.Errorf("archive: build: %q: unsupported file type %v", r, typ)
		}
	}
	return nil
}

func writeEntry(zw *zip.Writer, root string, e buildEntry, st *BuildStats) error {
	h := &zip.FileHeader{Name: e.rel, Modified: buildTime, Method: zip.Deflate}
	switch e.kind {
	case kindDir:
		h.Name += "/"
		h.Method = zip.Store
		h.SetMode(fs.ModeDir | 0o755)
	case kindLink:
		h.Method = zip.Store
		h.SetMode(fs.ModeSymlink | 0o777)
	default:
		if e.exec {
			h.SetMode(0o755)
		} else {
			h.SetMode(0o644)
		}
	}
	zf, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("archive: build: %w", err)
	}
	switch e.kind {
	case kindLink:
		n, err := io.WriteString(zf, e.target)
		if err != nil {
			return fmt.Errorf("archive: build: %w", err)
		}
		st.Files++
		st.Bytes += int64(n)
	case kindFile:
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(e.rel)))
		if err != nil {
			return fmt.Errorf("archive: build: %w", err)
		}
		n, err := io.Copy(zf, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("archive: build: %s: %w", e.rel, err)
		}
		st.Files++
		st.Bytes += n
	}
	return nil
}

type ignoreRule struct {
	pattern  string
	anchored bool // matched against the whole relative path, else the base name
	dirOnly  bool
	negate   bool
}

type ignorer struct {
	rules []ignoreRule
}

func loadIgnore(dir string) (*ignorer, error) {
	data, err := os.ReadFile(filepath.Join(dir, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &ignorer{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive: build: %w", err)
	}
	ign, err := parseIgnore(data)
	if err != nil {
		return nil, fmt.Errorf("archive: build: %s: %w", IgnoreFile, err)
	}
	return ign, nil
}

// parseIgnore reads .ternignore patterns: one a line; blank lines and lines
// starting with # are skipped; "!" re-includes; a trailing "/" matches
// directories only; a pattern with another "/" is anchored at the folder
// root and matched against the relative path, otherwise against base names.
// Patterns use path.Match syntax; "**" is not special.
func parseIgnore(data []byte) (*ignorer, error) {
	ign := &ignorer{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		var r ignoreRule
		if rest, ok := strings.CutPrefix(s, "!"); ok {
			r.negate, s = true, rest
		}
		if strings.HasSuffix(s, "/") {
			r.dirOnly = true
			s = strings.TrimRight(s, "/")
		}
		r.anchored = strings.Contains(s, "/")
		s = strings.TrimLeft(s, "/")
		if s == "" {
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			return nil, fmt.Errorf("line %d: bad pattern %q", line, sc.Text())
		}
		r.pattern = s
		ign.rules = append(ign.rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ign, nil
}

// ignored reports whether the slash path rel is left out; the last matching
// rule decides.
func (ig *ignorer) ignored(rel string, isDir bool) bool {
	ignored := false
	for _, r := range ig.rules {
		if r.dirOnly && !isDir {
			continue
		}
		subject := path.Base(rel)
		if r.anchored {
			subject = rel
		}
		if ok, _ := path.Match(r.pattern, subject); ok {
			ignored = !r.negate
		}
	}
	return ignored
}

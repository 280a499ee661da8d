package archive

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"path"
	"strings"
)

const (
	defaultMaxBytes         = 50 << 20
	defaultMaxExpandedBytes = 250 << 20
	defaultMaxEntries       = 10000

	manifestName = "tern.yaml"

	maxManifestBytes = 64 << 10
	maxLinkTarget    = 4096
	maxNameLen       = 2048
	maxElemLen       = 255
)

// Limits bounds what an archive may cost to validate and extract.
// A zero or negative field means the default for that field.
type Limits struct {
	MaxBytes         int64 // compressed archive size; default 50 MiB
	MaxExpandedBytes int64 // sum of uncompressed file sizes; default 250 MiB
	MaxEntries       int   // default 10000
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:         defaultMaxBytes,
		MaxExpandedBytes: defaultMaxExpandedBytes,
		MaxEntries:       defaultMaxEntries,
	}
}

func (l Limits) normalized() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxExpandedBytes <= 0 {
		l.MaxExpandedBytes = d.MaxExpandedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

var (
	// ErrInvalid marks a malformed or unsafe package: bad zip, bad paths,
	// bad links, missing manifest.
	ErrInvalid = errors.New("invalid package")
	// ErrTooLarge marks a package that exceeds one of the Limits.
	ErrTooLarge = errors.New("package too large")
)

// Error describes what is wrong with an archive; Entry names the zip entry
// when there is one.
type Error struct {
	Entry  string
	Reason string
	Err    error // ErrInvalid or ErrTooLarge
}

func (e *Error) Error() string {
	reason := e.Reason
	if reason == "" && e.Err != nil {
		reason = e.Err.Error()
	}
	if e.Entry != "" {
		return fmt.Sprintf("archive: entry %q: %s", e.Entry, reason)
	}
	return "archive: " + reason
}

func (e *Error) Unwrap() error { return e.Err }

func invalid(entry, format string, args ...any) error {
	return &Error{Entry: entry, Reason: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func tooLarge(entry, format string, args ...any) error {
	return &Error{Entry: entry, Reason: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// Info describes a valid package.
type Info struct {
	SHA256       string // lowercase hex sha256 of the archive bytes
	Size         int64  // archive bytes
	ExpandedSize int64  // real decompressed bytes (measured, not the headers' claims)
	Entries      int
	Manifest     []byte // contents of the root-level "tern.yaml" entry
	// Files are the package's regular files and links by cleaned path,
	// true when executable.
	Files map[string]bool
}

// Inspect validates an uploaded archive completely without writing to disk.
// Every entry is decompressed and checksummed.
func Inspect(r io.ReaderAt, size int64, lim Limits) (*Info, error) {
	p, err := open(r, size, lim)
	if err != nil {
		return nil, err
	}
	var manifest bytes.Buffer
	for _, e := range p.entries {
		if e.kind != kindFile {
			continue
		}
		var w io.Writer = io.Discard
		limit := int64(-1)
		if e == p.manifest {
			w, limit = &manifest, maxManifestBytes
		}
		if err := p.copyEntry(w, e, limit); err != nil {
			return nil, err
		}
	}

	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("archive: reading archive: %w", err)
	}
	if n != size {
		return nil, invalid("", "archive is %d bytes, not the %d announced", n, size)
	}
	files := make(map[string]bool, len(p.entries))
	for _, e := range p.entries {
		if e.kind != kindDir {
			files[e.name] = e.exec
		}
	}
	return &Info{
		SHA256:       hex.EncodeToString(h.Sum(nil)),
		Size:         size,
		ExpandedSize: p.expanded,
		Entries:      len(p.zr.File),
		Manifest:     manifest.Bytes(),
		Files:        files,
	}, nil
}

type kind uint8

const (
	kindFile kind = iota
	kindDir
	kindLink
)

type entry struct {
	zf     *zip.File
	name   string // cleaned slash path, no trailing slash
	kind   kind
	exec   bool
	target string // symlink target, once read
}

// pkg is an archive whose structure and symlinks have been validated;
// file contents are checked as they are copied.
type pkg struct {
	zr       *zip.Reader
	lim      Limits
	entries  []*entry // archive order
	manifest *entry
	expanded int64 // uncompressed bytes read so far
}

// open runs every check that does not need file contents (symlink targets
// are read, they are tiny).
func open(r io.ReaderAt, size int64, lim Limits) (*pkg, error) {
	lim = lim.normalized()
	if size < 0 {
		return nil, invalid("", "negative archive size")
	}
	if size > lim.MaxBytes {
		return nil, tooLarge("", "archive is %d bytes, limit is %d", size, lim.MaxBytes)
	}
	if n := countCentralRecords(r, size, lim.MaxEntries); n > lim.MaxEntries {
		return nil, tooLarge("", "more than %d entries", lim.MaxEntries)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// ErrInsecurePath comes with a usable reader; names are checked below.
		return nil, invalid("", "not a valid zip archive: %v", err)
	}
	if len(zr.File) > lim.MaxEntries {
		return nil, tooLarge("", "%d entries, limit is %d", len(zr.File), lim.MaxEntries)
	}
	p := &pkg{zr: zr, lim: lim}
	if err := p.checkStructure(); err != nil {
		return nil, err
	}
	if err := p.readLinks(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pkg) checkStructure() error {
	byName := make(map[string]*entry, len(p.zr.File))
	var declared uint64
	for _, f := range p.zr.File {
		name, reason := cleanName(f.Name)
		if reason != "" {
			return invalid(f.Name, "%s", reason)
		}
		if f.Flags&0x41 != 0 { // bit 0: encrypted, bit 6: strong encryption
			return invalid(f.Name, "encrypted entries are not supported")
		}
		mode := f.Mode()
		e := &entry{zf: f, name: name, exec: mode&0o111 != 0}
		switch mode.Type() {
		case 0:
			e.kind = kindFile
		case fs.ModeDir:
			e.kind = kindDir
		case fs.ModeSymlink:
			e.kind = kindLink
		default:
			return invalid(f.Name, "unsupported file type %v", mode.Type())
		}
		switch {
		case e.kind == kindDir && f.UncompressedSize64 != 0:
			return invalid(f.Name, "directory entry has contents")
		case e.kind != kindDir && f.Method != zip.Store && f.Method != zip.Deflate:
			return invalid(f.Name, "unsupported compression method %d", f.Method)
		case e.kind == kindLink && f.UncompressedSize64 > maxLinkTarget:
			return invalid(f.Name, "link target longer than %d bytes", maxLinkTarget)
		}
		if prev := byName[name]; prev != nil {
			if (prev.kind == kindDir) != (e.kind == kindDir) {
				return invalid(f.Name, "a file and a directory share the path %q", name)
			}
			return invalid(f.Name, "duplicate entry (same path as %q)", prev.zf.Name)
		}
		byName[name] = e
		p.entries = append(p.entries, e)
		declared = addSat(declared, f.UncompressedSize64)
	}

	for _, e := range p.entries {
		for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
			a := byName[dir]
			if a == nil || a.kind == kindDir {
				continue
			}
			if a.kind == kindLink {
				return invalid(e.zf.Name, "path goes through the symlink %q", a.zf.Name)
			}
			return invalid(e.zf.Name, "parent %q is a file", a.zf.Name)
		}
	}

	m := byName[manifestName]
	if m == nil {
		return invalid("", "missing %s at the package root", manifestName)
	}
	if m.kind != kindFile {
		return invalid(m.zf.Name, "%s must be a regular file", manifestName)
	}
	if m.zf.UncompressedSize64 > maxManifestBytes {
		return tooLarge(m.zf.Name, "manifest larger than %d bytes", maxManifestBytes)
	}
	p.manifest = m

	// Headers cannot be trusted to be small, but a header that claims more
	// than the limit is either true (too large) or a lie (archive/zip refuses
	// entries whose data does not match the declared size); either way there
	// is no point decompressing anything.
	if declared > uint64(p.lim.MaxExpandedBytes) {
		return tooLarge("", "entries declare more than %d uncompressed bytes", p.lim.MaxExpandedBytes)
	}
	return nil
}

func (p *pkg) readLinks() error {
	for _, e := range p.entries {
		if e.kind != kindLink {
			continue
		}
		var buf bytes.Buffer
		if err := p.copyEntry(&buf, e, maxLinkTarget); err != nil {
			return err
		}
		target := buf.String()
		if reason := checkLinkTarget(e.name, target); reason != "" {
			return invalid(e.zf.Name, "%s (target %q)", reason, target)
		}
		e.target = target
	}
	return nil
}

// copyEntry decompresses e into w, charging the bytes to the expanded-size
// budget and stopping as soon as it is exhausted. limit, if not negative, is
// a per-entry cap. Errors from w are returned as they are; everything else is
// an *Error.
func (p *pkg) copyEntry(w io.Writer, e *entry, limit int64) error {
	rc, err := e.zf.Open()
	if err != nil {
		return invalid(e.zf.Name, "cannot read entry: %v", err)
	}
	defer rc.Close()

	budget := p.lim.MaxExpandedBytes - p.expanded
	perEntry := limit >= 0 && limit < budget
	if perEntry {
		budget = limit
	}
	crc := crc32.NewIEEE()
	n, over, rerr, werr := copyLimited(io.MultiWriter(w, crc), rc, budget)
	p.expanded += n
	switch {
	case over && perEntry:
		if e == p.manifest {
			return tooLarge(e.zf.Name, "manifest larger than %d bytes", limit)
		}
		return invalid(e.zf.Name, "entry larger than %d bytes", limit)
	case over:
		return tooLarge(e.zf.Name, "uncompressed contents exceed %d bytes", p.lim.MaxExpandedBytes)
	case rerr != nil:
		return invalid(e.zf.Name, "corrupt data: %v", rerr)
	case werr != nil:
		return werr
	case crc.Sum32() != e.zf.CRC32:
		// archive/zip skips the check when the header's CRC is zero.
		return invalid(e.zf.Name, "checksum mismatch")
	}
	return nil
}

// copyLimited copies r to w until EOF or until more than budget bytes have
// been read, reading at most budget+1 bytes. It reports how many bytes were
// read, whether the budget was exceeded, and read and write errors apart.
func copyLimited(w io.Writer, r io.Reader, budget int64) (n int64, over bool, rerr, werr error) {
	if budget < 0 {
		budget = 0
	}
	readMax := budget
	if readMax < math.MaxInt64 {
		readMax++
	}
	src := &errReader{r: r}
	n, err := io.Copy(w, io.LimitReader(src, readMax))
	if n > budget {
		return n, true, nil, nil
	}
	if src.err != nil {
		return n, false, src.err, nil
	}
	return n, false, nil, err
}

// errReader remembers the first non-EOF error of r so that read errors can
// be told apart from write errors after io.Copy.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// cleanName validates a raw entry name and returns its cleaned form (no
// "." or empty elements, no trailing slash), or a reason it is refused.
func cleanName(raw string) (string, string) {
	switch {
	case raw == "":
		return "", "empty name"
	case strings.ContainsRune(raw, 0):
		return "", "name contains a NUL byte"
	case strings.HasPrefix(raw, "/") || hasDriveLetter(raw):
		return "", "path escapes the package (absolute path)"
	case strings.ContainsRune(raw, '\\'):
		return "", "path escapes the package (backslash in name)"
	}
	var elems []string
	for _, el := range strings.Split(raw, "/") {
		switch el {
		case "", ".":
			continue
		case "..":
			return "", "path escapes the package"
		}
		if len(el) > maxElemLen {
			return "", "path element too long"
		}
		elems = append(elems, el)
	}
	if len(elems) == 0 {
		return "", "name does not name anything"
	}
	name := strings.Join(elems, "/")
	if len(name) > maxNameLen {
		return "", "name too long"
	}
	return name, ""
}

func hasDriveLetter(s string) bool {
	if len(s) < 2 || s[1] != ':' {
		return false
	}
	c := s[0] | 0x20
	return c >= 'a' && c <= 'z'
}

// checkLinkTarget reports why target is not an acceptable target for the
// symlink at linkName (a cleaned path), or "" if it is.
//
// The target must be relative and may only climb ("..") before it descends.
// The directories a link's leading ".." walk through are real directories
// (no entry may sit below a symlink), so counting them against the link's
// depth is exact; and since every link in the package obeys the same rule,
// descending through other links never leaves the package either.
func checkLinkTarget(linkName, target string) string {
	switch {
	case target == "":
		return "empty link target"
	case len(target) > maxLinkTarget:
		return "link target too long"
	case strings.ContainsRune(target, 0):
		return "link target contains a NUL byte"
	case strings.HasPrefix(target, "/") || hasDriveLetter(target):
		return "link escapes the package (absolute target)"
	case strings.ContainsRune(target, '\\'):
		return "link target contains a backslash"
	}
	up, descended := 0, false
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if descended {
				return `link target climbs ("..") after descending; use a clean relative path`
			}
			up++
		default:
			descended = true
		}
	}
	depth := 0
	if dir := path.Dir(linkName); dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	if up > depth {
		return "link escapes the package"
	}
	return ""
}

package archive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zent describes one entry of a test zip.
type zent struct {
	name  string
	body  string
	mode  fs.FileMode // 0 means 0644
	flags uint16
}

func link(name, target string) zent {
	return zent{name: name, body: target, mode: fs.ModeSymlink | 0o777}
}

func dir(name string) zent { return zent{name: name, mode: fs.ModeDir | 0o755} }

var manifest = zent{name: "tern.yaml", body: "name: hello\n"}

func mkzip(t testing.TB, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Flags: e.flags}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawEntry writes an entry with caller-controlled (possibly lying) header
// fields and already-compressed data.
func rawEntry(t testing.TB, zw *zip.Writer, name string, method uint16, data []byte, crc uint32, usize uint64) {
	t.Helper()
	h := &zip.FileHeader{
		Name:               name,
		Method:             method,
		CRC32:              crc,
		CompressedSize64:   uint64(len(data)),
		UncompressedSize64: usize,
	}
	h.SetMode(0o644)
	w, err := zw.CreateRaw(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
}

func deflate(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	fw.Close()
	return buf.Bytes()
}

// rawZip builds a zip with a manifest followed by one raw entry.
func rawZip(t testing.TB, name string, method uint16, data []byte, crc uint32, usize uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create(manifest.name)
	io.WriteString(w, manifest.body)
	rawEntry(t, zw, name, method, data, crc, usize)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zeroBomb(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create(manifest.name)
	io.WriteString(w, manifest.body)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "bomb.bin", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(chunk) {
		w.Write(chunk[:min(left, len(chunk))])
	}
	zw.Close()
	return buf.Bytes()
}

// setEntryCount overwrites the entry counts in the end of central directory
// record.
func setEntryCount(b []byte, n uint16) []byte {
	b = bytes.Clone(b)
	i := bytes.LastIndex(b, []byte{'P', 'K', 5, 6})
	binary.LittleEndian.PutUint16(b[i+8:], n)
	binary.LittleEndian.PutUint16(b[i+10:], n)
	return b
}

func TestInspectRejects(t *testing.T) {
	many := []zent{manifest}
	for i := range 10 {
		many = append(many, zent{name: "f" + string(rune('a'+i)), body: "x"})
	}
	small := Limits{MaxExpandedBytes: 1 << 20}
	crcOf := func(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }

	tests := []struct {
		name   string
		zip    []byte
		lim    Limits
		want   error
		entry  string // expected Error.Entry; "-" to skip the check
		reason string // substring of the message
	}{
		{"not a zip", []byte("this is not a zip file at all, sorry"), Limits{}, ErrInvalid, "", "not a valid zip"},
		{"empty input", nil, Limits{}, ErrInvalid, "", "not a valid zip"},
		{"over MaxBytes", mkzip(t, manifest, zent{name: "a", body: strings.Repeat("x", 100)}), Limits{MaxBytes: 100}, ErrTooLarge, "", "limit is 100"},
		{"dotdot", mkzip(t, manifest, zent{name: "../x", body: "x"}), Limits{}, ErrInvalid, "../x", "path escapes the package"},
		{"absolute", mkzip(t, manifest, zent{name: "/abs", body: "x"}), Limits{}, ErrInvalid, "/abs", "path escapes the package"},
		{"inner dotdot", mkzip(t, manifest, zent{name: "a/../../x", body: "x"}), Limits{}, ErrInvalid, "a/../../x", "path escapes the package"},
		{"harmless dotdot", mkzip(t, manifest, zent{name: "a/../x", body: "x"}), Limits{}, ErrInvalid, "a/../x", "path escapes"},
		{"backslashes", mkzip(t, manifest, zent{name: `a\..\x`, body: "x"}), Limits{}, ErrInvalid, `a\..\x`, "backslash"},
		{"drive letter", mkzip(t, manifest, zent{name: `C:\x`, body: "x"}), Limits{}, ErrInvalid, `C:\x`, "path escapes"},
		{"drive letter slash", mkzip(t, manifest, zent{name: `c:/x`, body: "x"}), Limits{}, ErrInvalid, `c:/x`, "path escapes"},
		{"UNC", mkzip(t, manifest, zent{name: `\\host\share\x`, body: "x"}), Limits{}, ErrInvalid, `\\host\share\x`, "backslash"},
		{"NUL", mkzip(t, manifest, zent{name: "a\x00b", body: "x"}), Limits{}, ErrInvalid, "a\x00b", "NUL"},
		{"empty name", mkzip(t, manifest, zent{name: "", body: "x"}), Limits{}, ErrInvalid, "", "empty name"},
		{"only dots", mkzip(t, manifest, zent{name: "./", mode: fs.ModeDir | 0o755}), Limits{}, ErrInvalid, "./", "does not name"},
		{"long element", mkzip(t, manifest, zent{name: strings.Repeat("a", 256), body: "x"}), Limits{}, ErrInvalid, "-", "too long"},
		{"link to /etc/passwd", mkzip(t, manifest, link("pw", "/etc/passwd")), Limits{}, ErrInvalid, "pw", "link escapes the package"},
		{"link ../../x", mkzip(t, manifest, link("a/lnk", "../../x")), Limits{}, ErrInvalid, "a/lnk", "link escapes the package"},
		{"link .. at root", mkzip(t, manifest, link("lnk", "..")), Limits{}, ErrInvalid, "lnk", "link escapes the package"},
		{"link climbs through link", mkzip(t, manifest, link("d/up", ".."), link("d/x", "up/../..")), Limits{}, ErrInvalid, "d/x", "climbs"},
		{"link empty target", mkzip(t, manifest, link("lnk", "")), Limits{}, ErrInvalid, "lnk", "empty link target"},
		{"link backslash target", mkzip(t, manifest, link("lnk", `..\..\x`)), Limits{}, ErrInvalid, "lnk", "backslash"},
		{"link too long", mkzip(t, manifest, link("lnk", strings.Repeat("a/", 2049))), Limits{}, ErrInvalid, "lnk", "longer than 4096"},
		{"path through symlink", mkzip(t, manifest, link("lnk", "sub"), zent{name: "lnk/x", body: "x"}), Limits{}, ErrInvalid, "lnk/x", "symlink"},
		{"path through symlink, entry first", mkzip(t, manifest, zent{name: "lnk/deep/x", body: "x"}, link("lnk", "sub")), Limits{}, ErrInvalid, "lnk/deep/x", "symlink"},
		{"path through file", mkzip(t, manifest, zent{name: "f", body: "x"}, zent{name: "f/x", body: "x"}), Limits{}, ErrInvalid, "f/x", "is a file"},
		{"duplicate", mkzip(t, manifest, zent{name: "a.js", body: "1"}, zent{name: "a.js", body: "2"}), Limits{}, ErrInvalid, "a.js", "duplicate"},
		{"duplicate after cleaning", mkzip(t, manifest, zent{name: "a/b.js", body: "1"}, zent{name: "./a//b.js", body: "2"}), Limits{}, ErrInvalid, "./a//b.js", "duplicate"},
		{"duplicate manifest", mkzip(t, manifest, manifest), Limits{}, ErrInvalid, "tern.yaml", "duplicate"},
		{"file and dir", mkzip(t, manifest, zent{name: "a", body: "1"}, dir("a/")), Limits{}, ErrInvalid, "a/", "file and a directory"},
		{"device", mkzip(t, manifest, zent{name: "dev", mode: fs.ModeDevice | 0o644}), Limits{}, ErrInvalid, "dev", "unsupported file type"},
		{"fifo", mkzip(t, manifest, zent{name: "fifo", mode: fs.ModeNamedPipe | 0o644}), Limits{}, ErrInvalid, "fifo", "unsupported file type"},
		{"socket", mkzip(t, manifest, zent{name: "sock", mode: fs.ModeSocket | 0o644}), Limits{}, ErrInvalid, "sock", "unsupported file type"},
		{"encrypted", mkzip(t, manifest, zent{name: "secret", body: "x", flags: 1}), Limits{}, ErrInvalid, "secret", "encrypted"},
		{"too many entries", mkzip(t, many...), Limits{MaxEntries: 5}, ErrTooLarge, "", "more than 5 entries"},
		{"too many entries, lying count", setEntryCount(mkzip(t, many...), 1), Limits{MaxEntries: 5}, ErrTooLarge, "", "more than 5 entries"},
		{"zip bomb", zeroBomb(t, 10<<20), small, ErrTooLarge, "", "1048576"},
		{"many small entries over expanded limit", mkzip(t, manifest, zent{name: "a", body: strings.Repeat("a", 600)}, zent{name: "b", body: strings.Repeat("b", 600)}), Limits{MaxExpandedBytes: 1000}, ErrTooLarge, "", "1000"},
		{"header understates size", rawZip(t, "big", zip.Deflate, deflate(t, make([]byte, 1<<20)), 0, 100), Limits{}, ErrInvalid, "big", "corrupt data"},
		{"header overstates size", rawZip(t, "short", zip.Store, []byte("abc"), crcOf("abc"), 1000), Limits{}, ErrInvalid, "short", "corrupt data"},
		{"bad CRC", rawZip(t, "crc", zip.Store, []byte("abc"), crcOf("abd"), 3), Limits{}, ErrInvalid, "crc", "checksum"},
		{"zero CRC", rawZip(t, "crc0", zip.Store, []byte("abc"), 0, 3), Limits{}, ErrInvalid, "crc0", "checksum mismatch"},
		{"unknown method", rawZip(t, "m", 99, []byte("abc"), crcOf("abc"), 3), Limits{}, ErrInvalid, "m", "compression method"},
		{"corrupt deflate", rawZip(t, "c", zip.Deflate, []byte{0xff, 0xff, 0xff, 0xff}, 0, 3), Limits{}, ErrInvalid, "c", "corrupt data"},
		{"missing tern.yaml", mkzip(t, zent{name: "index.js", body: "x"}), Limits{}, ErrInvalid, "", "missing tern.yaml"},
		{"nested tern.yaml only", mkzip(t, zent{name: "sub/tern.yaml", body: "x"}), Limits{}, ErrInvalid, "", "missing tern.yaml"},
		{"tern.yaml is a dir", mkzip(t, dir("tern.yaml/")), Limits{}, ErrInvalid, "tern.yaml/", "regular file"},
		{"tern.yaml is a link", mkzip(t, zent{name: "m.yaml", body: "x"}, link("tern.yaml", "m.yaml")), Limits{}, ErrInvalid, "tern.yaml", "regular file"},
		{"tern.yaml too big", mkzip(t, zent{name: "tern.yaml", body: strings.Repeat("#", 64<<10+1)}), Limits{}, ErrTooLarge, "tern.yaml", "manifest larger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(bytes.NewReader(tt.zip), int64(len(tt.zip)), tt.lim)
			if err == nil {
				t.Fatalf("Inspect accepted it: %+v", info)
			}
			checkErr(t, err, tt.want, tt.entry, tt.reason)

			// Extract applies the same checks and leaves nothing behind.
			parent := t.TempDir()
			dest := filepath.Join(parent, "code")
			err = Extract(bytes.NewReader(tt.zip), int64(len(tt.zip)), dest, tt.lim)
			if err == nil {
				t.Fatal("Extract accepted it")
			}
			checkErr(t, err, tt.want, tt.entry, tt.reason)
			assertEmpty(t, parent)
		})
	}
}

func checkErr(t *testing.T, err, want error, entry, reason string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v; want %v", err, want)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T is not *Error", err)
	}
	if entry != "-" && ae.Entry != entry {
		t.Errorf("Entry = %q; want %q (%v)", ae.Entry, entry, err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("error %q does not mention %q", err, reason)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("left behind: %s", de.Name())
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Entry: "../evil.js", Reason: "path escapes the package", Err: ErrInvalid}
	if got, want := e.Error(), `archive: entry "../evil.js": path escapes the package`; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	e = &Error{Reason: "missing tern.yaml at the package root", Err: ErrInvalid}
	if got, want := e.Error(), "archive: missing tern.yaml at the package root"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if !errors.Is(e, ErrInvalid) || errors.Is(e, ErrTooLarge) {
		t.Error("Unwrap does not expose the sentinel")
	}
}

func TestInspectAccepts(t *testing.T) {
	tests := []struct {
		name string
		ents []zent
	}{
		{"manifest only", []zent{manifest}},
		{"link inside", []zent{manifest, zent{name: "lib/a.js", body: "a"}, link("a.js", "lib/a.js")}},
		{"link up and back down", []zent{manifest, zent{name: "lib/a.js", body: "a"}, link("src/x/a.js", "../../lib/a.js")}},
		{"link to root", []zent{manifest, link("sub/root", "..")}},
		{"link through link", []zent{manifest, dir("real/"), link("alias", "real"), link("d/f", "../alias/f")}},
		{"dangling link inside", []zent{manifest, link("nowhere", "missing/file")}},
		{"cleaned names", []zent{manifest, zent{name: "./a//b.js", body: "x"}, dir("a/")}},
		{"dir entries", []zent{manifest, dir("a/"), dir("a/b/"), zent{name: "a/b/c", body: "c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mkzip(t, tt.ents...)
			if _, err := Inspect(bytes.NewReader(b), int64(len(b)), DefaultLimits()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestInspectInfo(t *testing.T) {
	b := mkzip(t, manifest, dir("lib/"), zent{name: "lib/a.js", body: "hello"}, link("a.js", "lib/a.js"))
	info, err := Inspect(bytes.NewReader(b), int64(len(b)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %s", info.SHA256)
	}
	if info.Size != int64(len(b)) {
		t.Errorf("Size = %d; want %d", info.Size, len(b))
	}
	if want := int64(len(manifest.body) + len("hello") + len("lib/a.js")); info.ExpandedSize != want {
		t.Errorf("ExpandedSize = %d; want %d", info.ExpandedSize, want)
	}
	if info.Entries != 4 {
		t.Errorf("Entries = %d; want 4", info.Entries)
	}
	if string(info.Manifest) != manifest.body {
		t.Errorf("Manifest = %q", info.Manifest)
	}
}

func TestInspectShortReader(t *testing.T) {
	b := mkzip(t, manifest)
	// The announced size is larger than the data: not a valid archive.
	if _, err := Inspect(bytes.NewReader(b), int64(len(b))+10, Limits{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v; want ErrInvalid", err)
	}
}

// countingReader produces zeros forever and counts what was read.
type countingReader struct{ n int64 }

func (c *countingReader) Read(b []byte) (int, error) {
	clear(b)
	c.n += int64(len(b))
	return len(b), nil
}

func TestCopyLimitedStopsEarly(t *testing.T) {
	src := &countingReader{}
	n, over, rerr, werr := copyLimited(io.Discard, src, 1<<20)
	if !over || rerr != nil || werr != nil {
		t.Fatalf("over=%v rerr=%v werr=%v", over, rerr, werr)
	}
	if n != 1<<20+1 {
		t.Errorf("copied %d bytes; want limit+1", n)
	}
	if src.n > 1<<20+64<<10 {
		t.Errorf("read %d bytes from the source; want little more than the limit", src.n)
	}

	n, over, _, _ = copyLimited(io.Discard, strings.NewReader("12345"), 5)
	if over || n != 5 {
		t.Errorf("exact fit: n=%d over=%v", n, over)
	}
}

func TestStreamingLimitOnRealZip(t *testing.T) {
	// Headers within the limit, contents measured: the last byte overflows.
	b := mkzip(t, manifest, zent{name: "a", body: strings.Repeat("a", 1000)})
	lim := Limits{MaxExpandedBytes: int64(len(manifest.body)) + 999}
	p, err := open(bytes.NewReader(b), int64(len(b)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	p.lim = lim.normalized() // bypass the early check on declared sizes
	var got error
	for _, e := range p.entries {
		if got = p.copyEntry(io.Discard, e, -1); got != nil {
			break
		}
	}
	if !errors.Is(got, ErrTooLarge) {
		t.Fatalf("got %v; want ErrTooLarge", got)
	}
	if p.expanded != lim.MaxExpandedBytes+1 {
		t.Errorf("decompressed %d bytes; want exactly limit+1", p.expanded)
	}
}

func TestCheckLinkTarget(t *testing.T) {
	tests := []struct {
		link, target string
		ok           bool
	}{
		{"a", "b", true},
		{"a", "./b/", true},
		{"a", ".", true},
		{"a", "..", false},
		{"d/a", "..", true},
		{"d/a", "../..", false},
		{"d/e/a", "../../x/y", true},
		{"d/e/a", "../../../x", false},
		{"d/a", "x/../y", false},
		{"a", "/etc/passwd", false},
		{"a", "C:/x", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		if got := checkLinkTarget(tt.link, tt.target) == ""; got != tt.ok {
			t.Errorf("checkLinkTarget(%q, %q) ok=%v; want %v", tt.link, tt.target, got, tt.ok)
		}
	}
}

func TestCountCentralRecords(t *testing.T) {
	ents := []zent{manifest}
	for i := range 20 {
		ents = append(ents, zent{name: strings.Repeat("x", i+1), body: "x"})
	}
	b := mkzip(t, ents...)
	r := bytes.NewReader(b)
	if n := countCentralRecords(r, int64(len(b)), 100); n != 21 {
		t.Errorf("count = %d; want 21", n)
	}
	if n := countCentralRecords(r, int64(len(b)), 5); n != 6 {
		t.Errorf("count with limit 5 = %d; want 6", n)
	}
	lying := setEntryCount(b, 3)
	if n := countCentralRecords(bytes.NewReader(lying), int64(len(lying)), 100); n != 21 {
		t.Errorf("count with lying end record = %d; want 21", n)
	}
	// Data prepended to the archive (self-extractor style).
	pre := append(bytes.Repeat([]byte{'#'}, 1000), b...)
	if n := countCentralRecords(bytes.NewReader(pre), int64(len(pre)), 100); n != 21 {
		t.Errorf("count with prefix = %d; want 21", n)
	}
}

func TestExtractModes(t *testing.T) {
	b := mkzip(t, manifest,
		zent{name: "bin/run", body: "#!/bin/sh\n", mode: 0o700},
		zent{name: "lib/a.js", body: "a", mode: 0o666},
		dir("empty/"),
		link("a.js", "lib/a.js"),
	)
	dest := filepath.Join(t.TempDir(), "cache", "code")
	if err := Extract(bytes.NewReader(b), int64(len(b)), dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	wantMode := map[string]fs.FileMode{
		".":         fs.ModeDir | 0o755,
		"tern.yaml": 0o444,
		"bin":       fs.ModeDir | 0o755,
		"bin/run":   0o555,
		"lib":       fs.ModeDir | 0o755,
		"lib/a.js":  0o444,
		"empty":     fs.ModeDir | 0o755,
	}
	for name, want := range wantMode {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v; want %v", name, fi.Mode(), want)
		}
	}
	got, err := os.ReadFile(filepath.Join(dest, "a.js"))
	if err != nil || string(got) != "a" {
		t.Errorf("reading through the link: %q, %v", got, err)
	}
	des, _ := os.ReadDir(filepath.Dir(dest))
	if len(des) != 1 {
		t.Errorf("parent holds %d entries; want just the package", len(des))
	}
}

func TestExtractExistingDest(t *testing.T) {
	b := mkzip(t, manifest)
	for _, mk := range []func(string) error{
		func(p string) error { return os.Mkdir(p, 0o755) },
		func(p string) error { return os.WriteFile(p, nil, 0o644) },
		func(p string) error { return os.Symlink("elsewhere", p) },
	} {
		parent := t.TempDir()
		dest := filepath.Join(parent, "code")
		if err := mk(dest); err != nil {
			t.Fatal(err)
		}
		err := Extract(bytes.NewReader(b), int64(len(b)), dest, Limits{})
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("got %v; want fs.ErrExist", err)
		}
		des, _ := os.ReadDir(parent)
		if len(des) != 1 {
			t.Errorf("parent holds %d entries; want 1", len(des))
		}
	}
}

func TestExtractFailureLeavesNothing(t *testing.T) {
	// Structure is fine; the last file's data is corrupt, so the failure
	// comes after other files were written.
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []zent{manifest, {name: "a/one.js", body: "1"}, {name: "b/two.js", body: "2"}} {
		w, _ := zw.Create(e.name)
		io.WriteString(w, e.body)
	}
	rawEntry(t, zw, "z/bad.js", zip.Store, []byte("abc"), 12345, 3)
	zw.Close()
	b := buf.Bytes()

	parent := t.TempDir()
	dest := filepath.Join(parent, "code")
	err := Extract(bytes.NewReader(b), int64(len(b)), dest, Limits{})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v; want ErrInvalid", err)
	}
	assertEmpty(t, parent)
}

func TestExtractConcurrent(t *testing.T) {
	b := mkzip(t, manifest, zent{name: "a/b.js", body: "b"})
	parent := t.TempDir()
	dest := filepath.Join(parent, "code")
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- Extract(bytes.NewReader(b), int64(len(b)), dest, Limits{}) }()
	}
	ok := 0
	for range 8 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok == 0 {
		t.Error("no Extract succeeded")
	}
	if got, err := os.ReadFile(filepath.Join(dest, "a", "b.js")); err != nil || string(got) != "b" {
		t.Errorf("content %q, %v", got, err)
	}
	des, _ := os.ReadDir(parent)
	if len(des) != 1 {
		t.Errorf("parent holds %d entries; want 1", len(des))
	}
}

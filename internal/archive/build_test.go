package archive

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTree creates files under root; a value starting with "->" makes a
// symlink, a key ending in "/" a directory, and a "+x" suffix on the key an
// executable file.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		exec := strings.HasSuffix(name, "+x")
		name = strings.TrimSuffix(name, "+x")
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(body, "->"):
			if err := os.Symlink(strings.TrimPrefix(body, "->"), p); err != nil {
				t.Skipf("symlinks unavailable: %v", err)
			}
		default:
			mode := fs.FileMode(0o644)
			if exec {
				mode = 0o755
			}
			if err := os.WriteFile(p, []byte(body), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func build(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Build(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listing maps entry names of a zip to their modes.
func listing(t *testing.T, b []byte) map[string]fs.FileMode {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]fs.FileMode{}
	for _, f := range zr.File {
		m[f.Name] = f.Mode()
	}
	return m
}

func names(m map[string]fs.FileMode) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestBuildDeterministic(t *testing.T) {
	files := map[string]string{
		"tern.yaml":       "name: x\n",
		"index.js":        "export default 1\n",
		"lib/util.js":     "u",
		"lib/deep/z.js":   "z",
		"a.txt":           "a",
		"bin/tool+x":      "#!/bin/sh\n",
		"empty/":          "",
		"lib/current.js":  "->util.js",
		"node_modules/m/": "",
	}
	d1, d2 := t.TempDir(), t.TempDir()
	writeTree(t, d1, files)
	writeTree(t, d2, files)
	// Different mtimes must not matter.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.WalkDir(d2, func(p string, _ fs.DirEntry, _ error) error {
		os.Chtimes(p, old, old)
		return nil
	})

	a, b, c := build(t, d1), build(t, d1), build(t, d2)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same folder differ")
	}
	if !bytes.Equal(a, c) {
		t.Fatal("builds of identical folders with different mtimes differ")
	}

	zr, _ := zip.NewReader(bytes.NewReader(a), int64(len(a)))
	var got []string
	for _, f := range zr.File {
		got = append(got, f.Name)
		if !f.Modified.Equal(buildTime) {
			t.Errorf("%s: modified %v", f.Name, f.Modified)
		}
	}
	if !slices.IsSortedFunc(got, func(x, y string) int {
		return strings.Compare(strings.TrimSuffix(x, "/"), strings.TrimSuffix(y, "/"))
	}) {
		t.Errorf("entries not sorted: %q", got)
	}
}

func TestBuildModesAndLinks(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{
		"tern.yaml":      "name: x\n",
		"run+x":          "#!/bin/sh\n",
		"lib/a.js":       "a",
		"lib/alias.js":   "->a.js",
		"top.js":         "->lib/a.js",
		"sub/dir/up.js":  "->../../lib/a.js",
		"sub/lib":        "->../lib",
		"sub/dangling":   "->nothing/here",
		"private.js":     "p",
		"lib/group.js":   "g",
		"lib/worldw.js":  "w",
		"dir-with-file/": "",
	})
	os.Chmod(filepath.Join(d, "private.js"), 0o600)
	os.Chmod(filepath.Join(d, "lib/worldw.js"), 0o666)
	os.Chmod(filepath.Join(d, "lib/group.js"), 0o610) // group exec only

	var buf bytes.Buffer
	st, err := Build(d, &buf)
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	m := listing(t, b)
	want := map[string]fs.FileMode{
		"tern.yaml":      0o644,
		"run":            0o755,
		"lib/":           fs.ModeDir | 0o755,
		"lib/a.js":       0o644,
		"lib/alias.js":   fs.ModeSymlink | 0o777,
		"lib/group.js":   0o755,
		"lib/worldw.js":  0o644,
		"private.js":     0o644,
		"top.js":         fs.ModeSymlink | 0o777,
		"sub/":           fs.ModeDir | 0o755,
		"sub/dir/":       fs.ModeDir | 0o755,
		"sub/dir/up.js":  fs.ModeSymlink | 0o777,
		"sub/lib":        fs.ModeSymlink | 0o777,
		"sub/dangling":   fs.ModeSymlink | 0o777,
		"dir-with-file/": fs.ModeDir | 0o755,
	}
	for name, mode := range want {
		if m[name] != mode {
			t.Errorf("%s: mode %v; want %v", name, m[name], mode)
		}
	}
	if len(m) != len(want) {
		t.Errorf("entries %q; want %d", names(m), len(want))
	}
	if st.Files != 11 {
		t.Errorf("Files = %d; want 11", st.Files)
	}

	// Link targets are stored as contents.
	zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	for _, f := range zr.File {
		if f.Name != "sub/dir/up.js" {
			continue
		}
		rc, _ := f.Open()
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != "../../lib/a.js" {
			t.Errorf("link content %q", got)
		}
	}
}

func TestBuildRefusesOutsideLinks(t *testing.T) {
	for _, target := range []string{"../../outside", "/etc/passwd", "../lib/../../x", "../.."} {
		t.Run(target, func(t *testing.T) {
			d := t.TempDir()
			writeTree(t, d, map[string]string{"tern.yaml": "x", "lib/a.js": "a", "bad/link": "->" + target})
			_, err := Build(d, io.Discard)
			if err == nil {
				t.Fatal("Build accepted a link leaving the folder")
			}
			if !strings.Contains(err.Error(), `"bad/link"`) {
				t.Errorf("error %q does not name the link", err)
			}
		})
	}
}

func TestBuildRefusesSocket(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{"tern.yaml": "x"})
	l, err := net.Listen("unix", filepath.Join(d, "s.sock"))
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	defer l.Close()
	_, err = Build(d, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "s.sock") {
		t.Fatalf("got %v; want an error naming the socket", err)
	}
}

func TestBuildRefusesBadNames(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{"tern.yaml": "x", `back\slash.js`: "x"})
	if _, err := Build(d, io.Discard); err == nil {
		t.Fatal("Build accepted a name Inspect would refuse")
	}
}

func TestBuildIgnore(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{
		"tern.yaml":            "x",
		".git/config":          "secret",
		".git/objects/ab/cd":   "obj",
		"vendor/x/.git/HEAD":   "ref",
		"vendor/x/x.js":        "x",
		"debug.log":            "log",
		"sub/trace.log":        "log",
		"keep.log":             "important",
		"build/out/a.js":       "generated",
		"build/src.js":         "kept",
		"sub/build/out/b.js":   "not anchored, kept",
		"cache/c.bin":          "dir-only pattern",
		"sub/cache/d.bin":      "dir-only, any depth",
		"other/cache":          "a file named cache is kept",
		"docs/a.md":            "anchored glob",
		"docs/keep.txt":        "kept",
		"sub/docs/b.md":        "kept (anchored pattern)",
		"tmp/x":                "ignored dir",
		"tmp/important.txt":    "stays ignored: the dir is skipped whole",
		"notes.md":             "kept",
		"src/generated/gen.js": "dir pattern with slash",
		".ternignore": strings.Join([]string{
			"# comment",
			"",
			"*.log",
			"!keep.log",
			"/build/out",
			"cache/",
			"docs/*.md",
			"tmp",
			"!tmp/important.txt",
			"!important.txt",
			"src/generated/",
			"   ",
		}, "\n"),
	})

	got := names(listing(t, build(t, d)))
	want := []string{
		".ternignore",
		"build/",
		"build/src.js",
		"docs/",
		"docs/keep.txt",
		"keep.log",
		"notes.md",
		"other/",
		"other/cache",
		"src/",
		"sub/",
		"sub/build/",
		"sub/build/out/",
		"sub/build/out/b.js",
		"sub/docs/",
		"sub/docs/b.md",
		"tern.yaml",
		"vendor/",
		"vendor/x/",
		"vendor/x/x.js",
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n got %q\nwant %q", got, want)
	}
}

func TestParseIgnoreBadPattern(t *testing.T) {
	if _, err := parseIgnore([]byte("ok\n[unclosed\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v; want an error for line 2", err)
	}
	d := t.TempDir()
	writeTree(t, d, map[string]string{"tern.yaml": "x", ".ternignore": "a[\n"})
	if _, err := Build(d, io.Discard); err == nil {
		t.Fatal("Build accepted a bad .ternignore")
	}
}

func TestBuildNotADir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Build(f, io.Discard); err == nil {
		t.Fatal("Build accepted a file")
	}
	if _, err := Build(filepath.Join(t.TempDir(), "missing"), io.Discard); err == nil {
		t.Fatal("Build accepted a missing folder")
	}
}

func TestRoundTrip(t *testing.T) {
	d := t.TempDir()
	files := map[string]string{
		"tern.yaml":        "name: hello\nruntime: node\n",
		"index.js":         "export const handler = () => 42\n",
		"lib/util.js":      strings.Repeat("// filler\n", 1000),
		"bin/bootstrap+x":  "#!/bin/sh\nexec node index.js\n",
		"lib/current":      "->util.js",
		"assets/empty/":    "",
		"assets/logo.svg":  "<svg/>",
		"lib/deep/up.js":   "->../../index.js",
		".ternignore":      "*.tmp\n",
		"scratch.tmp":      "ignored",
		".git/HEAD":        "ref: refs/heads/main\n",
		"lib/sub/.git/xyz": "nested git",
	}
	writeTree(t, d, files)

	var buf bytes.Buffer
	st, err := Build(d, &buf)
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	info, err := Inspect(bytes.NewReader(b), int64(len(b)), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if string(info.Manifest) != files["tern.yaml"] {
		t.Errorf("Manifest = %q", info.Manifest)
	}
	if info.ExpandedSize != st.Bytes {
		t.Errorf("ExpandedSize %d, BuildStats.Bytes %d", info.ExpandedSize, st.Bytes)
	}

	dest := filepath.Join(t.TempDir(), "code", info.SHA256)
	if err := Extract(bytes.NewReader(b), int64(len(b)), dest, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		name = strings.TrimSuffix(name, "+x")
		p := filepath.Join(dest, filepath.FromSlash(name))
		switch {
		case name == "scratch.tmp" || strings.Contains(name, ".git/"):
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s was extracted", name)
			}
		case strings.HasSuffix(name, "/"):
			fi, err := os.Stat(p)
			if err != nil || fi.Mode() != fs.ModeDir|0o755 {
				t.Errorf("%s: %v %v", name, fi, err)
			}
		case strings.HasPrefix(body, "->"):
			target, err := os.Readlink(p)
			if err != nil || target != strings.TrimPrefix(body, "->") {
				t.Errorf("%s: link to %q (%v)", name, target, err)
			}
		default:
			got, err := os.ReadFile(p)
			if err != nil || string(got) != body {
				t.Errorf("%s: content %q (%v)", name, got, err)
			}
		}
	}
	for name, want := range map[string]fs.FileMode{
		"bin/bootstrap": 0o555,
		"index.js":      0o444,
		"lib":           fs.ModeDir | 0o755,
		"lib/current":   fs.ModeSymlink,
	} {
		fi, err := os.Lstat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want && !(want == fs.ModeSymlink && got.Type() == fs.ModeSymlink) {
			t.Errorf("%s: mode %v; want %v", name, got, want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dest, "lib/deep/up.js")); err != nil || string(got) != files["index.js"] {
		t.Errorf("reading through lib/deep/up.js: %q %v", got, err)
	}

	// A second extraction into the same place is refused.
	err = Extract(bytes.NewReader(b), int64(len(b)), dest, DefaultLimits())
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Extract: %v; want fs.ErrExist", err)
	}
}

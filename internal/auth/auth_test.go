package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/auth"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	tok, created, err := auth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Errorf("first call: created = false")
	}
	if !strings.HasPrefix(tok, "tern_") || len(tok) < 40 || strings.ContainsAny(tok, " \n\t") {
		t.Errorf("token %q: want tern_ and 43 URL-safe characters", tok)
	}
	path := auth.TokenPath(dir)
	if path != filepath.Join(dir, auth.TokenFile) {
		t.Errorf("TokenPath = %q", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != tok+"\n" {
		t.Errorf("token file = %q, %v; want the token and a newline", b, err)
	}

	again, created, err := auth.LoadOrCreate(dir)
	if err != nil || created || again != tok {
		t.Errorf("second call = %q, %v, %v; want the same token, not created", again, created, err)
	}
	if loaded, err := auth.Load(path); err != nil || loaded != tok {
		t.Errorf("Load = %q, %v", loaded, err)
	}

	// Another data dir gets another token.
	other, _, err := auth.LoadOrCreate(t.TempDir())
	if err != nil || other == tok {
		t.Errorf("another dir's token = %q, %v", other, err)
	}
}

func TestLoadOrCreateKeepsAWrittenToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(auth.TokenPath(dir), []byte("  my-token \n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, created, err := auth.LoadOrCreate(dir)
	if err != nil || created || tok != "my-token" {
		t.Errorf("LoadOrCreate = %q, %v, %v; want the file's token trimmed", tok, created, err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Load(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Load of an empty file = %v", err)
	}
	// A data dir that does not exist is an error, not a panic.
	if _, _, err := auth.LoadOrCreate(filepath.Join(dir, "no", "such")); err == nil {
		t.Error("LoadOrCreate in a missing dir succeeded")
	}
}

func TestLoadOrCreateConcurrent(t *testing.T) {
	for round := range 50 {
		dir := t.TempDir()
		const n = 16
		toks := make([]string, n)
		created := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				toks[i], created[i], errs[i] = auth.LoadOrCreate(dir)
			})
		}
		close(start)
		wg.Wait()
		made := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: call %d: %v", round, i, errs[i])
			}
			if toks[i] != toks[0] {
				t.Fatalf("round %d: calls disagree: %q and %q", round, toks[0], toks[i])
			}
			if created[i] {
				made++
			}
		}
		if made != 1 {
			t.Fatalf("round %d: %d calls say they created the token, want 1", round, made)
		}
		if tok, err := auth.Load(auth.TokenPath(dir)); err != nil || tok != toks[0] {
			t.Fatalf("round %d: file holds %q, %v; callers got %q", round, tok, err, toks[0])
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("round %d: data dir holds %v, want only the token", round, names)
		}
	}
}

func TestRequire(t *testing.T) {
	const tok = "tern_secret"
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("through"))
	})
	h := auth.Require(tok, next)
	tests := []struct {
		name   string
		header []string // nil: no Authorization header
		pass   bool
		reason string // "missing" or "invalid" for a 401
	}{
		{"missing", nil, false, "missing"},
		{"empty", []string{""}, false, "missing"},
		{"right", []string{"Bearer " + tok}, true, ""},
		{"lower-case scheme", []string{"bearer " + tok}, true, ""},
		{"upper-case scheme", []string{"BEARER " + tok}, true, ""},
		{"extra spaces", []string{"Bearer   " + tok + "  "}, true, ""},
		{"wrong", []string{"Bearer wrong"}, false, "invalid"},
		{"prefix of the token", []string{"Bearer " + tok[:5]}, false, "invalid"},
		{"token plus more", []string{"Bearer " + tok + "x"}, false, "invalid"},
		{"case of the token matters", []string{"Bearer " + strings.ToUpper(tok)}, false, "invalid"},
		{"basic", []string{"Basic x"}, false, "missing"},
		{"basic with the token", []string{"Basic " + tok}, false, "missing"},
		{"bearer alone", []string{"Bearer"}, false, "missing"},
		{"bearer and a space", []string{"Bearer "}, false, "missing"},
		{"bearer and spaces", []string{"Bearer    "}, false, "invalid"},
		{"no space", []string{"Bearer" + tok}, false, "missing"},
		{"token alone", []string{tok}, false, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/functions", nil)
			for _, v := range tt.header {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.pass {
				if rec.Code != http.StatusTeapot || rec.Body.String() != "through" {
					t.Errorf("answer = %d %q, want the wrapped handler's", rec.Code, rec.Body.String())
				}
				return
			}
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", rec.Code)
			}
			if strings.Contains(rec.Body.String(), "through") {
				t.Fatalf("wrapped handler ran")
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var b struct {
				Error string `json:"error"`
				Code  string `json:"code"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if b.Code != apierror.CodeUnauthorized || b.Error == "" {
				t.Errorf("body = %+v, want code unauthorized", b)
			}
			if strings.Contains(rec.Body.String(), tok) {
				t.Errorf("401 body shows the token")
			}
			wa := rec.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, `Bearer realm="tern"`) {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if invalid := strings.Contains(wa, "invalid_token"); invalid != (tt.reason == "invalid") {
				t.Errorf("WWW-Authenticate = %q for a %s token", wa, tt.reason)
			}
		})
	}
}

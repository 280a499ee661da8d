// Package testserver starts a real Tern server in-process for tests: the
// embedded NATS store in a temp dir, a random loopback port, real node
// processes. Logs go to t.Log.
package testserver

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/server"
)

// Server is a running server with a client for it.
type Server struct {
	*server.Server
	Config server.Config
	Client *client.Client
	t      testing.TB
}

// Config returns a configuration for a test server in dir.
func Config(dir string) server.Config {
	cfg := server.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Dispatch.ReapInterval = 100 * time.Millisecond
	cfg.PoolSize = 1 // many servers run in the tests; one pooled node each
	return cfg
}

// Start starts a server with cfg (see Config) and stops it when the test
// ends.
func Start(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := server.Start(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	ts := &Server{Server: s, Config: cfg, Client: client.New(s.URL(), s.Token()), t: t}
	t.Cleanup(func() { ts.Stop() })
	return ts
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		s.t.Errorf("stop server: %v", err)
	}
}

// Logger returns a slog.Logger writing to t.Log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// WriteFunction writes files (path → content) into a new temp folder and
// returns it.
func WriteFunction(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Deploy builds and uploads the function in files, failing the test on error.
func (s *Server) Deploy(files map[string]string) {
	s.t.Helper()
	var buf bytes.Buffer
	if _, err := archive.Build(WriteFunction(s.t, files), &buf); err != nil {
		s.t.Fatalf("build package: %v", err)
	}
	if _, err := s.Client.Deploy(context.Background(), &buf); err != nil {
		s.t.Fatalf("deploy: %v", err)
	}
}

// Get sends a request to path and returns status, headers and body.
func (s *Server) Do(method, path string, body io.Reader, header map[string]string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// Zip builds a zip from entries in order; an entry whose name ends in "@"
// followed by a target ("link@../x") is a symlink.
func Zip(t testing.TB, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		name, content := e[0], e[1]
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		if i := strings.LastIndex(name, "@"); i > 0 {
			h.Name = name[:i]
			content = name[i+1:]
			h.SetMode(os.ModeSymlink | 0o777)
		} else {
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CodeObjects fails unless the server's code Object Store is empty.
func CodeObjects(s *server.Server) error {
	n, err := s.CodeObjectCount(context.Background())
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("code object store holds %d objects, want 0", n)
	}
	return nil
}

// DeployDir builds and uploads the function folder dir.
func (s *Server) DeployDir(dir string) {
	s.t.Helper()
	var buf bytes.Buffer
	if _, err := archive.Build(dir, &buf); err != nil {
		s.t.Fatalf("build package: %v", err)
	}
	if _, err := s.Client.Deploy(context.Background(), &buf); err != nil {
		s.t.Fatalf("deploy: %v", err)
	}
}

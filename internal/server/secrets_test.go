package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/secrets"
	"github.com/ternhq/tern/internal/server"
	"github.com/ternhq/tern/internal/testserver"
)

// logCapture keeps the server's log lines (and shows them with t.Log).
type logCapture struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	c.mu.Unlock()
	c.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// secretServer is a server started with a logger the test reads.
type secretServer struct {
	*server.Server
	c *client.Client
}

func startSecretServer(t *testing.T, cfg server.Config, log *logCapture) *secretServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, cfg, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	s := &secretServer{Server: srv, c: client.New(srv.URL(), srv.Token())}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *secretServer) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("stop server: %v", err)
	}
}

func (s *secretServer) deploy(t *testing.T, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := archive.Build(testserver.WriteFunction(t, files), &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Deploy(context.Background(), &buf); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

// do sends an API request with the admin token (none if token is false).
func (s *secretServer) do(t *testing.T, method, path string, body io.Reader, token bool) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+s.Token())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

type secretSeen struct {
	Password, Shared, Plain string
}

func (s *secretServer) invoke(t *testing.T, fn string) secretSeen {
	t.Helper()
	out, err := s.c.Invoke(context.Background(), fn, nil)
	if err != nil {
		t.Fatalf("invoke %s: %v", fn, err)
	}
	var got secretSeen
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("invoke %s: %s: %v", fn, out, err)
	}
	return got
}

func (s *secretServer) instances(t *testing.T, fn string) int {
	t.Helper()
	raw, err := s.c.Get(context.Background(), fn)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Instances []struct{ Instances int } }
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range got.Instances {
		n += p.Instances
	}
	return n
}

// functionLogs is everything `tern logs` shows of fn.
func (s *secretServer) functionLogs(t *testing.T, fn string) string {
	t.Helper()
	var b strings.Builder
	err := s.c.Logs(context.Background(), fn, client.LogQuery{Since: "1h"}, func(e *logs.Entry) error {
		b.WriteString(e.Message)
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const secretJS = `exports.handler = async (e) => {
  console.log("handling", JSON.stringify(e));
  if (e && e.leak) console.log("the password is", process.env.DB_PASSWORD);
  return {password: process.env.DB_PASSWORD, shared: process.env.SHARED, plain: process.env.PLAIN};
};`

func secretFunction(name, scale string) map[string]string {
	return map[string]string{
		"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\n" + scale +
			"environment:\n  SHARED: from-manifest\n  PLAIN: plain\n",
		"index.js": secretJS,
	}
}

func TestSecrets(t *testing.T) {
	const (
		pw1 = "pw1-5b0e6c1f-secret"
		pw2 = "pw2-91d2aa07-secret"
	)
	t.Setenv(secrets.KeyEnv, "")
	dir := t.TempDir()
	cfg := testserver.Config(dir)
	serverLog := &logCapture{t: t}
	s := startSecretServer(t, cfg, serverLog)
	ctx := context.Background()

	fi, err := os.Stat(secrets.KeyPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the master key file: %v %v", fi, err)
	}
	var ce *client.Error
	if err := s.c.SetSecret(ctx, "db", "DB_PASSWORD", pw1); !errors.As(err, &ce) || ce.Status != 404 || ce.Code != "function_not_found" {
		t.Fatalf("a secret of a missing function: %v", err)
	}

	s.deploy(t, secretFunction("db", ""))
	if err := s.c.SetSecret(ctx, "db", "DB_PASSWORD", pw1); err != nil {
		t.Fatal(err)
	}
	if err := s.c.SetSecret(ctx, "db", "SHARED", "from-secret"); err != nil {
		t.Fatal(err)
	}
	// The function gets its secrets; a secret named like a manifest
	// variable wins over it.
	if got := s.invoke(t, "db"); got != (secretSeen{pw1, "from-secret", "plain"}) {
		t.Fatalf("the function saw %+v", got)
	}

	// The API shows names only, anywhere.
	ss, err := s.c.Secrets(ctx, "db")
	if err != nil || len(ss) != 2 || ss[0].Name != "DB_PASSWORD" || ss[1].Name != "SHARED" || ss[0].Updated.IsZero() {
		t.Fatalf("Secrets = %+v, %v", ss, err)
	}
	for _, path := range []string{"/v1/functions/db/secrets", "/v1/functions/db", "/v1/functions", "/v1/instances", "/v1/functions/db/stats"} {
		status, _, body := s.do(t, "GET", path, nil, true)
		if status != 200 || strings.Contains(body, pw1) || strings.Contains(body, "from-secret") {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
	}
	for _, c := range []struct {
		name, method, path string
		body               string
		token              bool
		status             int
		code               string
	}{
		{"too large", "PUT", "/v1/functions/db/secrets/BIG", strings.Repeat("x", secrets.MaxValueBytes+1), true, 413, "payload_too_large"},
		{"bad name", "PUT", "/v1/functions/db/secrets/BAD-NAME", pw1, true, 400, "bad_request"},
		{"reserved name", "PUT", "/v1/functions/db/secrets/AWS_LAMBDA_RUNTIME_API", pw1, true, 400, "bad_request"},
		{"NUL", "PUT", "/v1/functions/db/secrets/NUL", pw1 + "\x00", true, 400, "bad_request"},
		{"delete missing", "DELETE", "/v1/functions/db/secrets/NONE", "", true, 404, "not_found"},
		{"list missing function", "GET", "/v1/functions/nope/secrets", "", true, 404, "function_not_found"},
		{"delete of a missing function", "DELETE", "/v1/functions/nope/secrets/DB_PASSWORD", "", true, 404, "function_not_found"},
		{"no token", "PUT", "/v1/functions/db/secrets/DB_PASSWORD", "stolen", false, 401, "unauthorized"},
		{"no token list", "GET", "/v1/functions/db/secrets", "", false, 401, "unauthorized"},
	} {
		status, _, body := s.do(t, c.method, c.path, strings.NewReader(c.body), c.token)
		if status != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) || strings.Contains(body, pw1) {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	status, _, body := s.do(t, "PUT", "/v1/functions/db/secrets/MAX", strings.NewReader(strings.Repeat("x", secrets.MaxValueBytes)), true)
	if status != 204 || body != "" {
		t.Fatalf("a value at the limit: %d %s", status, body)
	}
	if err := s.c.DeleteSecret(ctx, "db", "MAX"); err != nil {
		t.Fatal(err)
	}

	// A change reaches new instances: the warm one keeps what it started
	// with; the next version's instance gets the new value.
	if err := s.c.SetSecret(ctx, "db", "DB_PASSWORD", pw2); err != nil {
		t.Fatal(err)
	}
	if got := s.invoke(t, "db"); got.Password != pw1 {
		t.Fatalf("the warm instance saw %q", got.Password)
	}
	s.deploy(t, secretFunction("db", ""))
	if got := s.invoke(t, "db"); got.Password != pw2 {
		t.Fatalf("after a redeploy the function saw %q", got.Password)
	}
	// ... and so does the instance that replaces an idle one stopped.
	s.deploy(t, secretFunction("brief", "scale:\n  idle: 1s\n"))
	if err := s.c.SetSecret(ctx, "brief", "DB_PASSWORD", pw1); err != nil {
		t.Fatal(err)
	}
	if got := s.invoke(t, "brief"); got.Password != pw1 {
		t.Fatalf("brief saw %q", got.Password)
	}
	if err := s.c.SetSecret(ctx, "brief", "DB_PASSWORD", pw2); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the idle instance to stop", func() bool { return s.instances(t, "brief") == 0 })
	if got := s.invoke(t, "brief"); got.Password != pw2 {
		t.Fatalf("after the idle instance stopped brief saw %q", got.Password)
	}

	// A function's environment and secrets must fit 4 KB together; a start
	// that would exceed it fails as an init error that shows no value.
	big := strings.Repeat("z", 4090)
	if err := s.c.SetSecret(ctx, "brief", "BIG", big); err != nil {
		t.Fatal(err)
	}
	s.deploy(t, secretFunction("brief", "scale:\n  idle: 1s\n"))
	_, err = s.c.Invoke(ctx, "brief", nil)
	var fe *client.FunctionError
	if !errors.As(err, &fe) || fe.Type != "Tern.EnvironmentTooLarge" || !strings.Contains(string(fe.Body), "4096") ||
		strings.Contains(string(fe.Body), "zzz") || strings.Contains(string(fe.Body), pw2) {
		t.Fatalf("a start with too large an environment: %v", err)
	}
	if err := s.c.DeleteSecret(ctx, "brief", "BIG"); err != nil {
		t.Fatal(err)
	}
	if got := s.invoke(t, "brief"); got.Password != pw2 {
		t.Fatalf("with BIG removed brief saw %q", got.Password)
	}

	// Logs hold no value unless the function prints it.
	testserver.Eventually(t, 10*time.Second, "the function's logs", func() bool {
		return strings.Count(s.functionLogs(t, "db"), "REPORT") >= 3
	})
	if l := s.functionLogs(t, "db"); strings.Contains(l, pw1) || strings.Contains(l, pw2) {
		t.Fatalf("the logs show a secret:\n%s", l)
	}
	if l := serverLog.String(); strings.Contains(l, pw1) || strings.Contains(l, pw2) || strings.Contains(l, big) {
		t.Fatal("the server's log shows a secret")
	}
	if _, err := s.c.Invoke(ctx, "db", []byte(`{"leak": true}`)); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the printed secret in the logs", func() bool {
		return strings.Contains(s.functionLogs(t, "db"), "the password is "+pw2)
	})

	// Secrets survive a restart (the key file is read again) and do not
	// open under another key.
	s.stop(t)
	other := make([]byte, 32)
	rand.Read(other)
	t.Setenv(secrets.KeyEnv, base64.StdEncoding.EncodeToString(other))
	s = startSecretServer(t, cfg, serverLog)
	_, err = s.c.Invoke(ctx, "db", nil)
	if !errors.As(err, &fe) || fe.Type != "Tern.SecretDecryptionFailed" || !strings.Contains(string(fe.Body), "DB_PASSWORD") ||
		strings.Contains(string(fe.Body), pw2) {
		t.Fatalf("a start under another master key: %v %s", err, fe.Body)
	}
	s.stop(t)
	t.Setenv(secrets.KeyEnv, "")
	s = startSecretServer(t, cfg, serverLog)
	if got := s.invoke(t, "db"); got.Password != pw2 {
		t.Fatalf("after a restart the function saw %q", got.Password)
	}

	// Deleting the function deletes its secrets: the function made again
	// under its name has none.
	if err := s.c.Delete(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	s.deploy(t, secretFunction("db", ""))
	if ss, err := s.c.Secrets(ctx, "db"); err != nil || len(ss) != 0 {
		t.Fatalf("secrets of the new db: %+v %v", ss, err)
	}
	if got := s.invoke(t, "db"); got != (secretSeen{"", "from-manifest", "plain"}) {
		t.Fatalf("the new db saw %+v", got)
	}
	if ss, err := s.c.Secrets(ctx, "brief"); err != nil || len(ss) != 1 {
		t.Fatalf("another function's secrets: %+v %v", ss, err)
	}
}

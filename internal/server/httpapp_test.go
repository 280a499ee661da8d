package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

const httpApp = `const http = require("http");
http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => body += c);
  req.on("end", () => {
    if (req.url === "/crash") process.exit(1);
    if (req.url === "/hang") return;
    if (req.url === "/stream") {
      res.writeHead(200, {"content-type": "text/plain"});
      res.write("first\n");
      // The rest once the test lets it (it read the first chunk).
      http.get(process.env.GATE_URL, (g) => { g.resume(); g.on("end", () => res.end("second\n")); });
      return;
    }
    if (req.url === "/size") { res.end(String(body.length)); return; }
    if (req.url === "/forever") {
      res.writeHead(200, {"content-type": "text/plain"});
      setInterval(() => res.write("tick\n"), 50);
      return;
    }
    if (req.url === "/redir") { res.writeHead(302, {"location": "/elsewhere"}); res.end(); return; }
    res.setHeader("Set-Cookie", ["a=1", "b=2"]);
    res.writeHead(req.url.startsWith("/missing") ? 404 : 200, {"content-type": "application/json", "x-app": "yes"});
    res.end(JSON.stringify({method: req.method, url: req.url, prefix: req.headers["x-forwarded-prefix"] || null,
      cookie: req.headers.cookie || null, body, id: process.env.AWS_LAMBDA_LOG_STREAM_NAME, port: process.env.PORT, fn: process.env.AWS_LAMBDA_FUNCTION_NAME}));
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
`

func TestHTTPRuntime(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	g := newGate(t)
	s.Deploy(map[string]string{
		"tern.yaml": "name: web\nruntime: http\ncommand: node server.js\nconcurrency: 4\nenvironment:\n  GATE_URL: " + g.URL + "\n",
		"server.js": httpApp,
	})
	status, h, body := s.Do("POST", "/fn/web/items/7?x=1", strings.NewReader("payload"), map[string]string{"Cookie": "c=3", "Content-Type": "text/plain"})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var got struct {
		Method, URL, Prefix, Cookie, Body, Port, Fn string
		ID                                          string // the instance's
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if got.Method != "POST" || got.URL != "/items/7?x=1" || got.Prefix != "/fn/web" || got.Cookie != "c=3" || got.Body != "payload" || got.Port == "" || got.Fn != "web" || got.ID == "" {
		t.Errorf("the app saw %+v", got)
	}
	if h.Get("X-App") != "yes" || len(h.Values("Set-Cookie")) != 2 {
		t.Errorf("response headers %v", h)
	}
	if status, _, _ := s.Do("GET", "/fn/web/missing", nil, nil); status != 404 {
		t.Errorf("app's 404 became %d", status)
	}
	// A direct invocation is a POST of the payload to /.
	out, err := s.Client.Invoke(context.Background(), "web", []byte(`{"k":"v"}`))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		StatusCode int
		Body       string
	}
	if json.Unmarshal(out, &res) != nil || res.StatusCode != 200 || !strings.Contains(res.Body, `"body":"{\"k\":\"v\"}"`) || !strings.Contains(res.Body, `"url":"/"`) {
		t.Errorf("direct invoke: %s", out)
	}
	// The app exiting mid-request: 502, and the next request gets a new one.
	if status, _, body := s.Do("GET", "/fn/web/crash", nil, nil); status != 502 {
		t.Errorf("crash: %d %s", status, body)
	}
	status, _, body = s.Do("GET", "/fn/web/again", nil, nil)
	var again struct{ ID string }
	if status != 200 || json.Unmarshal(body, &again) != nil || again.ID == "" || again.ID == got.ID {
		t.Errorf("after the crash: %d %s (instance before %q)", status, body, got.ID)
	}
	// Bodies stream: the first chunk arrives while the app holds the rest
	// back until the test has read it (a buffered answer never would).
	resp, err := http.Get(s.URL() + "/fn/web/stream")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	first := make([]byte, 6)
	go func() {
		_, err := io.ReadFull(resp.Body, first)
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil || string(first) != "first\n" {
			t.Fatalf("first chunk %q %v", first, err)
		}
	case <-time.After(60 * time.Second):
		g.Open()
		t.Fatal("no first chunk while the app held the rest back: the response was buffered")
	}
	g.Open()
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
	// A large request body goes through.
	status, _, body = s.Do("POST", "/fn/web/size", strings.NewReader(strings.Repeat("x", 3<<20)), nil)
	if status != 200 || string(body) != strconv.Itoa(3<<20) {
		t.Errorf("large body: %d %s", status, body)
	}
	// A command that never listens is an init error.
	s.Deploy(map[string]string{"tern.yaml": "name: deaf\nruntime: http\ncommand: exit 3\n"})
	if status, _, body := s.Do("GET", "/fn/deaf", nil, nil); status != 502 || !strings.Contains(string(body), "Runtime.ExitError") {
		t.Errorf("deaf app: %d %s", status, body)
	}
}

// getStarted GETs path until it answers 200 and returns the body. An
// app's queue wait is its timeout: a cold start on a busy machine can
// take longer (429) and the instance it started answers a later try.
func getStarted(t *testing.T, s *testserver.Server, path string) []byte {
	t.Helper()
	var body []byte
	testserver.Eventually(t, 60*time.Second, "an instance answering "+path, func() bool {
		var status int
		status, _, body = s.Do("GET", path, nil, nil)
		return status == 200
	})
	return body
}

func TestHTTPRuntimeTimeout(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: slowweb\nruntime: http\ncommand: node server.js\ntimeout: 1s\n",
		"server.js": httpApp,
	})
	getStarted(t, s, "/fn/slowweb/ok")
	st, err := s.Client.Stats(context.Background(), "slowweb")
	if err != nil {
		t.Fatal(err)
	}
	warm := st.Counts.Invocations
	start := time.Now()
	if status, _, body := s.Do("GET", "/fn/slowweb/hang", nil, nil); status != 504 {
		t.Fatalf("hang: %d %s", status, body)
	}
	// /hang never answers: any answer is the timeout; the bound leaves a
	// busy machine the time it needs to kill the app.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("timeout took %s", d)
	}
	getStarted(t, s, "/fn/slowweb/ok") // after the timeout, a new instance
	st, err = s.Client.Stats(context.Background(), "slowweb")
	if err != nil || st.Counts.Timeouts != 1 || st.Counts.Invocations != warm+2 {
		t.Errorf("stats %+v %v, want 1 timeout and %d invocations", st, err, warm+2)
	}
}

// A response cut mid-stream (the function's timeout passes while the app
// streams) kills the app and frees its place; a chunked body over the limit
// is a 413 and leaves the app alone; redirects are the app's answer.
func TestHTTPRuntimeEdges(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: edgy\nruntime: http\ncommand: node server.js\ntimeout: 1s\nscale:\n  max: 1\n",
		"server.js": httpApp,
	})
	getStarted(t, s, "/fn/edgy/ok")
	resp, err := http.Get(s.URL() + "/fn/edgy/forever")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _ = io.ReadAll(resp.Body) // ends when Tern cuts it
	resp.Body.Close()
	if d := time.Since(start); d > 30*time.Second { // /forever never ends by itself
		t.Fatalf("the stream was not cut at the timeout: %s", d)
	}
	st, err := s.Client.Stats(context.Background(), "edgy")
	if err != nil || st.Counts.Timeouts != 1 {
		t.Fatalf("stats after the cut: %+v %v", st, err)
	}
	// Its place is free again: with scale.max 1, this call needs it.
	body := getStarted(t, s, "/fn/edgy/ok")
	var before struct{ ID string } // the instance's
	if json.Unmarshal(body, &before) != nil || before.ID == "" {
		t.Fatalf("after the cut: %s", body)
	}

	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 7 {
			if _, err := pw.Write(chunk); err != nil {
				break
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", s.URL()+"/fn/edgy/size", pr)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("7 MB chunked body: %d, want 413", resp.StatusCode)
	}
	status, _, body := s.Do("GET", "/fn/edgy/ok", nil, nil)
	var after struct{ ID string }
	if status != 200 || json.Unmarshal(body, &after) != nil || after.ID != before.ID {
		t.Errorf("the app did not survive an oversized request: %d %s (instance before %q)", status, body, before.ID)
	}

	out, err := s.Client.Invoke(context.Background(), "edgy", []byte(`{"version":"2.0","rawPath":"/redir","requestContext":{"http":{"method":"GET"}}}`))
	if err != nil || !strings.Contains(string(out), `"statusCode":302`) {
		t.Errorf("a redirect was followed: %s %v", out, err)
	}
}

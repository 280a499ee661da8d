package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

const httpApp = `const http = require("http");
http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => body += c);
  req.on("end", () => {
    if (req.url === "/crash") process.exit(1);
    res.setHeader("Set-Cookie", ["a=1", "b=2"]);
    res.writeHead(req.url.startsWith("/missing") ? 404 : 200, {"content-type": "application/json", "x-app": "yes"});
    res.end(JSON.stringify({method: req.method, url: req.url, prefix: req.headers["x-forwarded-prefix"] || null,
      cookie: req.headers.cookie || null, body, pid: process.pid, port: process.env.PORT, fn: process.env.AWS_LAMBDA_FUNCTION_NAME}));
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
`

func TestHTTPRuntime(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: web\nruntime: http\ncommand: node server.js\nconcurrency: 4\n",
		"server.js": httpApp,
	})
	status, h, body := s.Do("POST", "/fn/web/items/7?x=1", strings.NewReader("payload"), map[string]string{"Cookie": "c=3", "Content-Type": "text/plain"})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var got struct {
		Method, URL, Prefix, Cookie, Body, Port, Fn string
		Pid                                         int
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if got.Method != "POST" || got.URL != "/items/7?x=1" || got.Prefix != "/fn/web" || got.Cookie != "c=3" || got.Body != "payload" || got.Port == "" || got.Fn != "web" {
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
	var again struct{ Pid int }
	if status != 200 || json.Unmarshal(body, &again) != nil || again.Pid == got.Pid {
		t.Errorf("after the crash: %d %s (pid before %d)", status, body, got.Pid)
	}
	// A command that never listens is an init error.
	s.Deploy(map[string]string{"tern.yaml": "name: deaf\nruntime: http\ncommand: exit 3\n"})
	if status, _, body := s.Do("GET", "/fn/deaf", nil, nil); status != 502 || !strings.Contains(string(body), "Runtime.ExitError") {
		t.Errorf("deaf app: %d %s", status, body)
	}
}

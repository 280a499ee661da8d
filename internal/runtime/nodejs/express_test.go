package nodejs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// startHTTPStyle starts a framed bootstrap, specialises it for the
// Express-style handler with the given concurrency and waits for READY.
func startHTTPStyle(t testing.TB, concurrency int, handler string, files map[string]string) *framedtest.Runtime {
	t.Helper()
	f := startFramed(t, files, nil)
	f.Send(t, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{
		"handler":     handler,
		"taskRoot":    f.TaskRoot,
		"env":         f.FunctionEnv(handler, nil),
		"concurrency": concurrency,
		"style":       "http",
	}), nil)
	f.WantReady(t)
	return f
}

// urlEvent is a function URL event (payload 2.0) with the usual fields.
func urlEvent(t testing.TB, method, path, query string, headers map[string]string, cookies []string, body string, b64 bool) string {
	t.Helper()
	ev := map[string]any{
		"version":         "2.0",
		"routeKey":        "$default",
		"rawPath":         path,
		"rawQueryString":  query,
		"headers":         headers,
		"isBase64Encoded": b64,
		"requestContext": map[string]any{
			"http": map[string]any{"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
		},
	}
	if cookies != nil {
		ev["cookies"] = cookies
	}
	if body != "" {
		ev["body"] = body
	}
	if query == "a=1&b=two" {
		ev["queryStringParameters"] = map[string]string{"a": "1", "b": "two"}
	}
	return string(framedtest.MustJSON(t, ev))
}

// urlResult is a function URL structured result.
type urlResult struct {
	StatusCode      int               `json:"statusCode"`
	Headers         map[string]string `json:"headers"`
	Cookies         []string          `json:"cookies"`
	Body            string            `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
}

func wantURLResult(t testing.TB, fr framedtest.Frame) urlResult {
	t.Helper()
	if fr.Type != framedtest.Response {
		t.Fatalf("got frame type %d %s %s, want RESPONSE", fr.Type, fr.Header, fr.Body)
	}
	var r urlResult
	dec := json.NewDecoder(bytes.NewReader(fr.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("result %s: %v", fr.Body, err)
	}
	if r.Headers == nil || r.Cookies == nil {
		t.Fatalf("result %s: want headers object and cookies array", fr.Body)
	}
	return r
}

func TestExpressHandlerKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, handler string
		files         map[string]string
	}{
		{"module.exports default", "index.default", map[string]string{
			"index.js": `module.exports = (req, res) => { res.json({ ok: true, path: req.path }); };`,
		}},
		{"module.exports handler", "index.handler", map[string]string{
			"index.js": `module.exports = (req, res) => { res.json({ ok: true, path: req.path }); };`,
		}},
		{"module only", "index", map[string]string{
			"index.js": `module.exports = (req, res) => { res.json({ ok: true, path: req.path }); };`,
		}},
		{"exports.handler", "index.handler", map[string]string{
			"index.js": `exports.handler = (req, res) => res.json({ ok: true, path: req.path });`,
		}},
		{"esm default", "index.default", map[string]string{
			"index.mjs": "export default async function (req, res) {\n  await new Promise((r) => setTimeout(r, 5));\n  res.json({ ok: true, path: req.path });\n}\n",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startHTTPStyle(t, 1, tc.handler, tc.files)
			r := wantURLResult(t, f.Invoke(t, urlEvent(t, "GET", "/p", "", map[string]string{}, nil, "", false), nil))
			if r.StatusCode != 200 || r.Headers["content-type"] != "application/json" || r.Body != `{"ok":true,"path":"/p"}` || r.IsBase64Encoded || len(r.Cookies) != 0 {
				t.Errorf("result = %+v", r)
			}
		})
	}
}

func TestExpressRequest(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `
exports.handler = (req, res) => {
  res.json({
    method: req.method, url: req.url, path: req.path, query: req.query, ip: req.ip,
    headers: req.headers, getCT: req.get('Content-Type') || null, cookie: req.get('COOKIE') || null,
    isBuffer: Buffer.isBuffer(req.body), body: Buffer.isBuffer(req.body) ? Array.from(req.body) : req.body,
    raw: Buffer.isBuffer(req.rawBody) ? req.rawBody.toString('utf8') : null,
  });
};`,
	})
	type got struct {
		Method, URL, Path, IP string
		Query                 map[string]string
		Headers               map[string]string
		GetCT, Cookie         *string
		IsBuffer              bool
		Body                  json.RawMessage
		Raw                   *string
	}
	call := func(ev string) got {
		t.Helper()
		r := wantURLResult(t, f.Invoke(t, ev, nil))
		var g got
		if err := json.Unmarshal([]byte(r.Body), &g); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		return g
	}

	g := call(urlEvent(t, "POST", "/items/7", "a=1&b=two", map[string]string{"Content-Type": "text/plain", "x-custom": "v"}, []string{"s=1", "t=2"}, "hello", false))
	if g.Method != "POST" || g.URL != "/items/7?a=1&b=two" || g.Path != "/items/7" || g.IP != "203.0.113.7" {
		t.Errorf("request = %+v", g)
	}
	if len(g.Query) != 2 || g.Query["a"] != "1" || g.Query["b"] != "two" {
		t.Errorf("query = %v", g.Query)
	}
	if g.Headers["content-type"] != "text/plain" || g.Headers["x-custom"] != "v" || g.Headers["cookie"] != "s=1; t=2" {
		t.Errorf("headers = %v", g.Headers)
	}
	if g.GetCT == nil || *g.GetCT != "text/plain" || g.Cookie == nil || *g.Cookie != "s=1; t=2" {
		t.Errorf("get = %v %v", g.GetCT, g.Cookie)
	}
	if !g.IsBuffer || string(g.Body) != "[104,101,108,108,111]" {
		t.Errorf("text body: buffer %v %s", g.IsBuffer, g.Body)
	}

	// No query, no cookies: url is the path, query {}.
	g = call(urlEvent(t, "GET", "/", "", map[string]string{}, nil, "", false))
	if g.URL != "/" || g.Query == nil || len(g.Query) != 0 || g.Headers["cookie"] != "" || !g.IsBuffer || string(g.Body) != "[]" {
		t.Errorf("bare request = %+v (body %s)", g, g.Body)
	}

	// JSON is parsed; rawBody keeps the bytes.
	g = call(urlEvent(t, "PUT", "/j", "", map[string]string{"content-type": "application/vnd.api+json; charset=utf-8"}, nil, `{"n":1,"s":"x"}`, false))
	if g.IsBuffer || string(g.Body) != `{"n":1,"s":"x"}` || g.Raw == nil || *g.Raw != `{"n":1,"s":"x"}` {
		t.Errorf("json body: buffer %v %s raw %v", g.IsBuffer, g.Body, g.Raw)
	}
	g = call(urlEvent(t, "POST", "/j", "", map[string]string{"content-type": "application/json"}, nil, base64.StdEncoding.EncodeToString([]byte(`[1,2]`)), true))
	if g.IsBuffer || string(g.Body) != `[1,2]` {
		t.Errorf("base64 json body: buffer %v %s", g.IsBuffer, g.Body)
	}

	// A base64 binary body is decoded to its bytes.
	bin := []byte{0, 1, 0xfe, 0xff, 0x80}
	g = call(urlEvent(t, "POST", "/b", "", map[string]string{"content-type": "application/octet-stream"}, nil, base64.StdEncoding.EncodeToString(bin), true))
	if !g.IsBuffer || string(g.Body) != "[0,1,254,255,128]" {
		t.Errorf("binary body: buffer %v %s", g.IsBuffer, g.Body)
	}
}

func TestExpressResponse(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `
exports.handler = async (req, res) => {
  switch (req.path) {
  case '/send':
    if (res.status(201).set('X-A', '1') !== res) throw new Error('not chainable');
    res.send('hi');
    if (!res.headersSent || !res.finished) throw new Error('flags not set');
    return;
  case '/binary':
    res.send(Buffer.from([0, 0xff, 0xfe, 1]));
    return;
  case '/cookies':
    res.set('Set-Cookie', ['a=1; Path=/', 'b=2']);
    res.setHeader('set-cookie', 'c=3');
    res.setHeader('X-Multi', ['x', 'y']);
    if (res.getHeader('x-multi').length !== 2) throw new Error('getHeader');
    res.status(204).end();
    return;
  case '/object':
    res.send({ o: 1 });
    return;
  case '/textbuf':
    res.set('content-type', 'text/plain').end(Buffer.from('héllo'));
    return;
  }
};`,
	})
	invoke := func(path string) urlResult {
		t.Helper()
		return wantURLResult(t, f.Invoke(t, urlEvent(t, "GET", path, "", map[string]string{}, nil, "", false), nil))
	}

	r := invoke("/send")
	if r.StatusCode != 201 || r.Headers["x-a"] != "1" || r.Headers["content-type"] != "text/html; charset=utf-8" || r.Body != "hi" || r.IsBase64Encoded {
		t.Errorf("send = %+v", r)
	}

	r = invoke("/binary")
	b, err := base64.StdEncoding.DecodeString(r.Body)
	if r.StatusCode != 200 || !r.IsBase64Encoded || err != nil || !bytes.Equal(b, []byte{0, 0xff, 0xfe, 1}) || r.Headers["content-type"] != "application/octet-stream" {
		t.Errorf("binary = %+v (%v)", r, err)
	}

	r = invoke("/cookies")
	if r.StatusCode != 204 || len(r.Cookies) != 3 || r.Cookies[0] != "a=1; Path=/" || r.Cookies[1] != "b=2" || r.Cookies[2] != "c=3" {
		t.Errorf("cookies = %+v", r)
	}
	if _, ok := r.Headers["set-cookie"]; ok || r.Headers["x-multi"] != "x,y" || r.Body != "" {
		t.Errorf("cookies headers = %+v", r)
	}

	r = invoke("/object")
	if r.Headers["content-type"] != "application/json" || r.Body != `{"o":1}` {
		t.Errorf("object = %+v", r)
	}

	r = invoke("/textbuf")
	if r.IsBase64Encoded || r.Body != "héllo" {
		t.Errorf("text buffer = %+v", r)
	}
}

func TestExpressCompletion(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `
class TeapotError extends Error { constructor(m) { super(m); this.name = 'TeapotError'; } }
exports.handler = async (req, res) => {
  switch (req.path) {
  case '/later':
    setTimeout(() => res.status(202).end('late'), 50);
    return;
  case '/none':
    return;
  case '/pending':
    await new Promise(() => {});
    return;
  case '/throw':
    throw new TeapotError('short and stout');
  case '/twice':
    res.send('first');
    res.send('second');
    throw new Error('after the response');
  }
};
exports.sync = (req, res) => { throw new RangeError('sync'); };`,
	})
	invoke := func(path string) framedtest.Frame {
		t.Helper()
		return f.Invoke(t, urlEvent(t, "GET", path, "", map[string]string{}, nil, "", false), nil)
	}

	r := wantURLResult(t, invoke("/later"))
	if r.StatusCode != 202 || r.Body != "late" {
		t.Errorf("later = %+v", r)
	}

	start := time.Now()
	framedtest.WantError(t, invoke("/none"), framedtest.Error, "Runtime.NoResponse", "the handler returned without sending a response")
	if d := time.Since(start); d > time.Second {
		t.Errorf("Runtime.NoResponse took %v", d)
	}
	framedtest.WantError(t, invoke("/pending"), framedtest.Error, "Runtime.NoResponse", "without sending a response")

	framedtest.WantError(t, invoke("/throw"), framedtest.Error, "TeapotError", "short and stout")

	// The first response wins; later ones and a throw are ignored.
	r = wantURLResult(t, invoke("/twice"))
	if r.Body != "first" {
		t.Errorf("twice = %+v", r)
	}

	// The instance still serves.
	r = wantURLResult(t, invoke("/later"))
	if r.StatusCode != 202 {
		t.Errorf("later again = %+v", r)
	}
	if !f.Running() {
		t.Fatal("node exited")
	}
}

func TestExpressSyncThrow(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `exports.handler = (req, res) => { throw new RangeError('sync boom'); };`,
	})
	framedtest.WantError(t, f.Invoke(t, urlEvent(t, "GET", "/", "", map[string]string{}, nil, "", false), nil), framedtest.Error, "RangeError", "sync boom")
}

// TestExpressConcurrent checks that Express-style invocations overlap: each
// waits until all three have started, which only concurrent ones can, and
// each is answered with its own result, in whatever order.
func TestExpressConcurrent(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 4, "index.default", map[string]string{
		"index.mjs": `
let started = 0;
let allStarted;
const all = new Promise((r) => { allStarted = r; });
export default async function (req, res) {
  if (++started === 3) allStarted();
  await all;
  if (req.query.fail) throw new TypeError('bad ' + req.query.n);
  res.status(200).json({ n: req.query.n });
}`,
	})
	ev := func(n, fail string) []byte {
		e := map[string]any{
			"version": "2.0", "rawPath": "/", "rawQueryString": "n=" + n,
			"queryStringParameters": map[string]string{"n": n}, "headers": map[string]string{},
			"requestContext":  map[string]any{"http": map[string]any{"method": "GET", "path": "/", "sourceIp": "127.0.0.1"}},
			"isBase64Encoded": false,
		}
		if fail != "" {
			e["queryStringParameters"].(map[string]string)["fail"] = fail
		}
		return framedtest.MustJSON(t, e)
	}
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "one", nil), ev("1", ""))
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "two", nil), ev("2", ""))
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "bad", nil), ev("3", "1"))
	seen := map[string]bool{}
	for range 3 {
		id, fr := f.ReadAnswer(t)
		if seen[id] {
			t.Fatalf("second answer for %s", id)
		}
		seen[id] = true
		switch id {
		case "bad":
			framedtest.WantError(t, fr, framedtest.Error, "TypeError", "bad 3")
		case "one", "two":
			want := map[string]string{"one": `{"n":"1"}`, "two": `{"n":"2"}`}[id]
			if r := wantURLResult(t, fr); r.Body != want {
				t.Errorf("%s: body %s, want %s", id, r.Body, want)
			}
		default:
			t.Fatalf("answer for %q", id)
		}
	}
}

// TestExpressNext checks next as Express's final handler has it: next()
// is a 404, next(err) a 500 (or the error's 4xx/5xx status) whose error is
// logged but not sent; headers the handler set are dropped.
func TestExpressNext(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `
exports.handler = (req, res, next) => {
  res.set('X-Set-Before', '1');
  switch (req.path) {
  case '/none': return next();
  case '/route': return next('route');
  case '/err': return next(new Error('secret detail'));
  case '/teapot': { const e = new Error('short'); e.status = 418; return next(e); }
  case '/bogus-status': { const e = new Error('x'); e.statusCode = 200; return next(e); }
  case '/string': return next('plain string');
  case '/async': return Promise.resolve().then(() => setTimeout(() => next(new RangeError('later')), 5));
  case '/after': res.send('answered'); return next(new Error('after the response'));
  case '/params': return res.json({ params: req.params, same: req.res === res && res.req === req });
  }
};`,
	})
	invoke := func(method, path string) (string, urlResult) {
		t.Helper()
		id := f.NextID()
		r := wantURLResult(t, f.Invoke(t, urlEvent(t, method, path, "", map[string]string{}, nil, "", false), map[string]any{"id": id}))
		return id, r
	}

	for _, tc := range []struct {
		method, path string
		status       int
		text         string
		logged       string
	}{
		{"GET", "/none", 404, "Cannot GET /none", ""},
		{"POST", "/route", 404, "Cannot POST /route", ""},
		{"GET", "/err", 500, "Internal Server Error", `"errorMessage":"secret detail"`},
		{"GET", "/teapot", 418, "I&#39;m a Teapot", `"errorMessage":"short"`},
		{"GET", "/bogus-status", 500, "Internal Server Error", `"errorMessage":"x"`},
		{"GET", "/string", 500, "Internal Server Error", `"errorMessage":"plain string"`},
		{"GET", "/async", 500, "Internal Server Error", `"errorType":"RangeError"`},
	} {
		id, r := invoke(tc.method, tc.path)
		if r.StatusCode != tc.status || !strings.Contains(r.Body, "<pre>"+tc.text+"</pre>") ||
			r.Headers["content-type"] != "text/html; charset=utf-8" || r.Headers["x-set-before"] != "" {
			t.Errorf("%s %s: %+v, want %d with %q", tc.method, tc.path, r, tc.status, tc.text)
		}
		if strings.Contains(r.Body, "secret") || strings.Contains(r.Body, "at ") {
			t.Errorf("%s: the error reached the caller: %s", tc.path, r.Body)
		}
		if tc.logged != "" {
			framedtest.WaitOutput(t, f.Stdout, id+"\tERROR\tError passed to next() \t{")
			if line := lineWith(f.Stdout.String(), id); !strings.Contains(line, tc.logged) {
				t.Errorf("%s: logged %q, want it to contain %s", tc.path, line, tc.logged)
			}
		}
	}

	// HEAD: no body.
	if _, r := invoke("HEAD", "/none"); r.StatusCode != 404 || r.Body != "" {
		t.Errorf("HEAD next() = %+v", r)
	}
	// After the response, next(err) is only logged.
	id, r := invoke("GET", "/after")
	if r.StatusCode != 200 || r.Body != "answered" {
		t.Errorf("after = %+v", r)
	}
	framedtest.WaitOutput(t, f.Stdout, id+"\tERROR\tError passed to next() \t{")
	_, r = invoke("GET", "/params")
	if r.Body != `{"params":{},"same":true}` {
		t.Errorf("params = %s", r.Body)
	}
	if !f.Running() {
		t.Fatal("node exited")
	}
}

// lineWith returns the first line of out containing s.
func lineWith(out, s string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

func TestExpressRedirect(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 1, "index.handler", map[string]string{
		"index.js": `
exports.handler = (req, res) => {
  switch (req.path) {
  case '/plain': return res.redirect('/elsewhere');
  case '/status': return res.redirect(301, 'https://example.com/a b?q=é&x=%41');
  case '/legacy': return res.redirect('/old', 307);
  case '/back': return res.redirect('back');
  case '/location': return res.status(201).location('/made').end();
  }
};`,
	})
	call := func(method, path string, headers map[string]string) urlResult {
		t.Helper()
		return wantURLResult(t, f.Invoke(t, urlEvent(t, method, path, "", headers, nil, "", false), nil))
	}
	for _, tc := range []struct {
		method, path string
		headers      map[string]string
		status       int
		location     string
		ctype, body  string
	}{
		{"GET", "/plain", map[string]string{}, 302, "/elsewhere", "text/plain; charset=utf-8", "Found. Redirecting to /elsewhere"},
		{"GET", "/status", map[string]string{}, 301, "https://example.com/a%20b?q=%C3%A9&x=%41", "text/plain; charset=utf-8",
			"Moved Permanently. Redirecting to https://example.com/a%20b?q=%C3%A9&x=%41"},
		{"GET", "/legacy", map[string]string{"accept": "text/html,*/*;q=0.8"}, 307, "/old", "text/html; charset=utf-8",
			`<p>Temporary Redirect. Redirecting to <a href="/old">/old</a></p>`},
		{"GET", "/back", map[string]string{"referer": "/from"}, 302, "/from", "text/plain; charset=utf-8", "Found. Redirecting to /from"},
		{"GET", "/back", map[string]string{}, 302, "/", "text/plain; charset=utf-8", "Found. Redirecting to /"},
		{"HEAD", "/plain", map[string]string{}, 302, "/elsewhere", "text/plain; charset=utf-8", ""},
		{"GET", "/location", map[string]string{}, 201, "/made", "", ""},
	} {
		r := call(tc.method, tc.path, tc.headers)
		if r.StatusCode != tc.status || r.Headers["location"] != tc.location || r.Headers["content-type"] != tc.ctype || r.Body != tc.body {
			t.Errorf("%s %s %v: %+v, want %d to %q (%q) %q", tc.method, tc.path, tc.headers, r, tc.status, tc.location, tc.ctype, tc.body)
		}
	}
}

func TestExpressStyleProtocolError(t *testing.T) {
	t.Parallel()
	f := startFramed(t, map[string]string{"index.js": `exports.handler = () => {};`}, nil)
	f.Send(t, framedtest.Specialize, framedtest.MustJSON(t, map[string]any{
		"handler": "index.handler", "taskRoot": f.TaskRoot, "env": f.FunctionEnv("index.handler", nil), "style": "express",
	}), nil)
	f.WantExit(t, 1)
}

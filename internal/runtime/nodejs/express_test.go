package nodejs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
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

func TestExpressConcurrent(t *testing.T) {
	t.Parallel()
	f := startHTTPStyle(t, 4, "index.default", map[string]string{
		"index.mjs": `
export default async function (req, res) {
  const ms = Number(req.query.ms || 0);
  await new Promise((r) => setTimeout(r, ms));
  if (req.query.fail) throw new TypeError('bad ' + ms);
  res.status(200).json({ ms });
}`,
	})
	ev := func(ms, fail string) []byte {
		e := map[string]any{
			"version": "2.0", "rawPath": "/", "rawQueryString": "ms=" + ms,
			"queryStringParameters": map[string]string{"ms": ms}, "headers": map[string]string{},
			"requestContext":  map[string]any{"http": map[string]any{"method": "GET", "path": "/", "sourceIp": "127.0.0.1"}},
			"isBase64Encoded": false,
		}
		if fail != "" {
			e["queryStringParameters"].(map[string]string)["fail"] = fail
		}
		return framedtest.MustJSON(t, e)
	}
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "slow", nil), ev("150", ""))
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "fast", nil), ev("10", ""))
	f.Send(t, framedtest.Invoke, framedtest.InvokeHeader(t, "bad", nil), ev("60", "1"))
	var order []string
	for range 3 {
		id, fr := f.ReadAnswer(t)
		order = append(order, id)
		if id == "bad" {
			framedtest.WantError(t, fr, framedtest.Error, "TypeError", "bad 60")
			continue
		}
		r := wantURLResult(t, fr)
		want := map[string]string{"slow": `{"ms":150}`, "fast": `{"ms":10}`}[id]
		if r.Body != want {
			t.Errorf("%s: body %s, want %s", id, r.Body, want)
		}
	}
	if order[0] != "fast" || order[1] != "bad" || order[2] != "slow" {
		t.Errorf("answer order %v, want fast bad slow", order)
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

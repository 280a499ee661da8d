package server_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

// Event and response conformance for HTTP triggers across runtimes: the
// same table of requests goes to one function per runtime, each
// implementing the protocol in testdata/conformance/README.md.

// conformanceRuntime is one runtime under test.
type conformanceRuntime struct {
	name string // the function's name
	// result: the handler returns a function URL result (Lambda style),
	// so it can return any JSON value; Express-style and http functions
	// only write a response.
	result bool
	// event: the function sees the payload 2.0 event itself, so it can
	// tell whether the body came base64-encoded.
	event bool
	// joined: repeated header and query values arrive as one value joined
	// with ",". That is the function URL event format (headers and
	// queryStringParameters are maps of strings), so every runtime fed by
	// the event has it, Express style included: Tern builds req.headers
	// and req.query from the event. Only runtime http, reverse-proxied,
	// sees each value on its own.
	joined bool
	// files of the function folder: the manifest, then testdata files.
	manifest string
	dir      string // under testdata/conformance
	// bootstrap: build the Go function into the folder's bootstrap.
	bootstrap bool
}

var conformanceRuntimes = []conformanceRuntime{
	{name: "confnode", result: true, event: true, joined: true, dir: "nodejs",
		manifest: "name: confnode\nruntime: nodejs\nhandler: index.handler\n"},
	{name: "confpy", result: true, event: true, joined: true, dir: "python",
		manifest: "name: confpy\nruntime: python\nhandler: app.handler\n"},
	{name: "confgo", result: true, event: true, joined: true, bootstrap: true,
		manifest: "name: confgo\nruntime: provided\n"},
	{name: "confhttp", dir: "http",
		manifest: "name: confhttp\nruntime: http\ncommand: node server.js\n"},
	{name: "confexpress", joined: true, dir: "express",
		manifest: "name: confexpress\nruntime: nodejs\nhandler: index.handler\nstyle: http\n"},
}

// conformanceEcho is the /echo answer.
type conformanceEcho struct {
	Method, Path, RawQuery string
	Query, Multi, Cookies  []string
	Single, ContentType    string
	BodyLen                int
	SHA256                 string
	Base64                 bool
}

type conformanceCase struct {
	name       string
	lambdaOnly bool // only for runtimes whose handler returns a result
	method     string
	path       string // after /fn/<name>
	header     http.Header
	body       []byte
	check      func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte)
}

func TestConformanceHTTPTriggers(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	megabyte := make([]byte, 1<<20) // text, so it travels unencoded in the event
	for i := range megabyte {
		megabyte[i] = byte('a' + i%26)
		if i%80 == 79 {
			megabyte[i] = '\n'
		}
	}
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}

	// checkBody checks the body the function saw against want.
	checkBody := func(t *testing.T, rt conformanceRuntime, e conformanceEcho, want []byte, wantBase64 bool) {
		t.Helper()
		sum := sha256.Sum256(want)
		if e.BodyLen != len(want) || e.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("body: the function saw %d bytes, sha256 %s; sent %d, sha256 %x", e.BodyLen, e.SHA256, len(want), sum)
		}
		if rt.event && e.Base64 != wantBase64 {
			t.Errorf("isBase64Encoded %v, want %v", e.Base64, wantBase64)
		}
	}

	cases := []conformanceCase{{
		name:   "binary request body",
		method: "POST", path: "/echo",
		header: http.Header{"Content-Type": {"application/octet-stream"}},
		body:   random,
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			e := decodeEcho(t, status, body)
			if e.Method != "POST" || e.Path != "/echo" || e.RawQuery != "" || e.ContentType != "application/octet-stream" {
				t.Errorf("the function saw %+v", e)
			}
			// Not valid text: base64 in the event, the same bytes to the handler.
			checkBody(t, rt, e, random, true)
		},
	}, {
		name:   "binary response",
		method: "GET", path: "/binary",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			if status != 200 || h.Get("Content-Type") != "application/octet-stream" || !bytes.Equal(body, all256) {
				t.Errorf("%d %q: % x", status, h.Get("Content-Type"), body)
			}
		},
	}, {
		name:   "cookies in",
		method: "GET", path: "/echo",
		header: http.Header{"Cookie": {"a=1; b=2"}},
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			// Lambda style: the event's cookies array; Express style: the
			// cookie header rebuilt from it; http: the Cookie header.
			if e := decodeEcho(t, status, body); !slices.Equal(e.Cookies, []string{"a=1", "b=2"}) {
				t.Errorf("cookies %q", e.Cookies)
			}
		},
	}, {
		name:   "cookies out",
		method: "GET", path: "/cookies",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			if got := h.Values("Set-Cookie"); status != 200 || !slices.Equal(got, []string{"c1=v1; Path=/", "c2=v2; HttpOnly"}) {
				t.Errorf("%d Set-Cookie %q", status, got)
			}
		},
	}, {
		name:   "repeated headers and query parameters",
		method: "GET", path: "/echo?a=1&a=2&b=x",
		header: http.Header{"X-Multi": {"v1", "v2"}, "X-Single": {"one"}},
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			e := decodeEcho(t, status, body)
			wantMulti, wantQuery := []string{"v1", "v2"}, []string{"1", "2"}
			if rt.joined {
				wantMulti, wantQuery = []string{"v1,v2"}, []string{"1,2"}
			}
			// rawQueryString (and the URL) keeps the query as sent everywhere.
			if e.RawQuery != "a=1&a=2&b=x" || e.Single != "one" || !slices.Equal(e.Multi, wantMulti) || !slices.Equal(e.Query, wantQuery) {
				t.Errorf("the function saw %+v; want X-Multi %q, a %q", e, wantMulti, wantQuery)
			}
		},
	}, {
		name:   "empty body",
		method: "POST", path: "/echo",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			e := decodeEcho(t, status, body)
			if e.Method != "POST" {
				t.Errorf("method %q", e.Method)
			}
			checkBody(t, rt, e, nil, false)
		},
	}, {
		name:   "1 MB body",
		method: "PUT", path: "/echo",
		header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		body:   megabyte,
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			e := decodeEcho(t, status, body)
			if e.Method != "PUT" {
				t.Errorf("method %q", e.Method)
			}
			checkBody(t, rt, e, megabyte, false)
		},
	}, {
		name:   "non-JSON text result",
		method: "GET", path: "/text",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			if status != 200 || h.Get("Content-Type") != "text/plain" || string(body) != "plain text, not JSON" {
				t.Errorf("%d %q %q", status, h.Get("Content-Type"), body)
			}
		},
	}, {
		name:   "statusCode-only result",
		method: "GET", path: "/status-only",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			if status != 204 || len(body) != 0 {
				t.Errorf("%d %q", status, body)
			}
		},
	}, {
		// A result that is not an object with statusCode is sent as is:
		// 200, application/json, the JSON text (quotes included).
		name:       "non-object JSON result",
		lambdaOnly: true,
		method:     "GET", path: "/plain",
		check: func(t *testing.T, rt conformanceRuntime, status int, h http.Header, body []byte) {
			if status != 200 || h.Get("Content-Type") != "application/json" || string(body) != `"just a string"` {
				t.Errorf("%d %q %q", status, h.Get("Content-Type"), body)
			}
		},
	}}

	s := testserver.Start(t, testserver.Config(t.TempDir()))
	for _, rt := range conformanceRuntimes {
		t.Run(rt.name, func(t *testing.T) {
			deployConformance(t, s, rt)
			for _, c := range cases {
				if c.lambdaOnly && !rt.result {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					var body io.Reader
					if c.body != nil {
						body = bytes.NewReader(c.body)
					}
					req, err := http.NewRequest(c.method, s.URL()+"/fn/"+rt.name+c.path, body)
					if err != nil {
						t.Fatal(err)
					}
					for k, vs := range c.header {
						req.Header[k] = vs
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatal(err)
					}
					c.check(t, rt, resp.StatusCode, resp.Header, b)
				})
			}
		})
	}
}

func decodeEcho(t *testing.T, status int, body []byte) conformanceEcho {
	t.Helper()
	var e conformanceEcho
	if status != 200 {
		t.Fatalf("/echo: %d %s", status, body)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("/echo: %s: %v", body, err)
	}
	return e
}

// deployConformance deploys rt's function: its manifest and its folder
// under testdata/conformance, or for provided the Go function built.
func deployConformance(t *testing.T, s *testserver.Server, rt conformanceRuntime) {
	t.Helper()
	files := map[string]string{"tern.yaml": rt.manifest}
	if rt.dir != "" {
		src := filepath.Join("testdata", "conformance", rt.dir)
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			b, err := os.ReadFile(filepath.Join(src, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[en.Name()] = string(b)
		}
	}
	dir := testserver.WriteFunction(t, files)
	if rt.bootstrap {
		if err := os.WriteFile(filepath.Join(dir, "bootstrap"), buildConformanceGo(t), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.DeployDir(dir)
}

// buildConformanceGo builds testdata/conformance/go, an aws-lambda-go
// function, as buildLambdaGo does testdata/lambdago (same module version
// and checksums).
func buildConformanceGo(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "conformance", "go", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join("testdata", "lambdago", "go.sum.golden"))
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module conformance\n\ngo 1.26\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n"
	for name, content := range map[string][]byte{"main.go": src, "go.mod": []byte(gomod), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-tags", "lambda.norpc", "-o", "bootstrap", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the conformance Go function: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

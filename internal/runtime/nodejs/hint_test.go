package nodejs

import (
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/runtime/framedtest"
)

// TestHandlerNotFoundHints checks that a Lambda-style handler that is not
// found says which function the module exports and what to write in
// tern.yaml to use it.
func TestHandlerNotFoundHints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		files map[string]string
		want  string // the whole message
	}{
		{"express module.exports", map[string]string{"index.js": `module.exports = (req, res) => res.send('hi');`},
			`index.handler is undefined or not exported; index.js exports a function as module.exports, which takes (req, res) as an Express handler does: set "style: http" in tern.yaml`},
		{"express default export", map[string]string{"index.mjs": `export default function (req, res, next) { res.send('hi'); }`},
			`index.handler is undefined or not exported; index.mjs exports a function as its default export, which takes (req, res, next) as an Express handler does: set "style: http" in tern.yaml`},
		{"express named", map[string]string{"index.js": `exports.app = async function app(request, response) {};`},
			`index.handler is undefined or not exported; index.js exports the function app, which takes (request, response) as an Express handler does: set "style: http" and "handler: index.app" in tern.yaml`},
		{"lambda default export", map[string]string{"index.mjs": `export default async (event, context) => 1;`},
			`index.handler is undefined or not exported; index.mjs exports a function as its default export: set "handler: index.default" in tern.yaml`},
		{"lambda module.exports", map[string]string{"index.js": `module.exports = async (event) => 1;`},
			`index.handler is undefined or not exported; index.js exports a function as module.exports: set "handler: index.default" in tern.yaml`},
		{"other names", map[string]string{"index.js": `exports.main = async (e) => 1; exports.helper = () => 2; exports.n = 3;`},
			`index.handler is undefined or not exported; index.js exports the functions main, helper: set "handler: index.main" in tern.yaml`},
		{"default export object", map[string]string{"index.mjs": `export default { main: async (e) => 1 };`},
			`index.handler is undefined or not exported; index.mjs exports the function main: set "handler: index.main" in tern.yaml`},
		{"no function", map[string]string{"index.js": `exports.n = 3;`},
			`index.handler is undefined or not exported`},
		{"not a function", map[string]string{"index.js": `exports.handler = 3; exports.main = () => 1;`},
			`index.handler is not a function; index.js exports the function main: set "handler: index.main" in tern.yaml`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFramed(t, tc.files, nil)
			f.Specialize(t, "index.handler", f.FunctionEnv("index.handler", nil), 0)
			framedtest.WantError(t, f.Read(t), framedtest.InitError, "Runtime.HandlerNotFound", tc.want)
			f.WantExit(t, 1)
		})
	}
}

// TestHintedHandlersWork checks that what the hints say to write works.
func TestHintedHandlersWork(t *testing.T) {
	t.Parallel()
	for name, files := range map[string]map[string]string{
		"module.exports": {"index.js": `module.exports = async (event) => event.n + 1;`},
		"default export": {"index.mjs": `export default async (event) => event.n + 1;`},
		"default object": {"index.mjs": `export default { default: async (event) => event.n + 1 };`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "index.default", files, nil)
			framedtest.WantResponse(t, f.Invoke(t, `{"n":1}`, nil), `2`)
		})
	}
	t.Run("express", func(t *testing.T) {
		t.Parallel()
		f := startHTTPStyle(t, 1, "index.handler", map[string]string{"index.js": `module.exports = (req, res) => res.send('hi');`})
		if r := wantURLResult(t, f.Invoke(t, urlEvent(t, "GET", "/", "", map[string]string{}, nil, "", false), nil)); r.Body != "hi" {
			t.Errorf("result %+v", r)
		}
	})
}

// TestExpressParamsInLambdaStyle checks that a Lambda-style handler whose
// parameters look like (req, res) loads with a warning, and that its
// invocation errors say to set style: http.
func TestExpressParamsInLambdaStyle(t *testing.T) {
	t.Parallel()
	const hint = `set "style: http" in tern.yaml`
	for name, code := range map[string]string{
		"arrow":    `exports.handler = (req, res) => { res.status(200).send('x'); };`,
		"function": `exports.handler = async function handler(req, res, next) { res.json({}); };`,
		"method":   `module.exports = { handler(req, res) { return res.send('x'); } };`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := startReady(t, "index.handler", map[string]string{"index.js": code}, nil)
			framedtest.WaitOutput(t, f.Stdout, "\tWARN\tindex.handler takes (req, res")
			framedtest.WantError(t, f.Invoke(t, `{}`, nil), framedtest.Error, "TypeError", "is not a function (index.handler takes (req, res")
			if !strings.Contains(f.Stdout.String(), hint) {
				t.Errorf("output lacks %q:\n%s", hint, f.Stdout)
			}
		})
	}
	// Lambda parameters: no warning, errors as they are.
	f := startReady(t, "index.handler", map[string]string{"index.js": `exports.handler = async (event, context) => { throw new TypeError('plain'); };`}, nil)
	fr := f.Invoke(t, `{}`, nil)
	framedtest.WantError(t, fr, framedtest.Error, "TypeError", "plain")
	if strings.Contains(string(fr.Body), "style") || strings.Contains(f.Stdout.String(), "WARN") {
		t.Errorf("a Lambda handler got a style hint: %s\n%s", fr.Body, f.Stdout)
	}
}

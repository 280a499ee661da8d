package runtime

import "testing"

func TestShellCommand(t *testing.T) {
	for in, want := range map[string]string{
		"node server.js":            "exec node server.js",
		"  python3 app.py --port 1": "exec python3 app.py --port 1",
		"exec node s.js":            "exec node s.js",
		"PORT=1 node s.js":          "PORT=1 node s.js",
		"npm ci && node s.js":       "npm ci && node s.js",
		"node s.js > log":           "node s.js > log",
		"node $APP":                 "node $APP",
		"node 's.js'":               "node 's.js'",
	} {
		if got := shellCommand(in); got != want {
			t.Errorf("shellCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

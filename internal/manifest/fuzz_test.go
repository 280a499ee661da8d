package manifest

import (
	"encoding/json"
	"testing"
)

// FuzzParse feeds arbitrary text to the manifest parser: it must never
// panic, and what it accepts must be valid and survive a JSON round trip
// (as versions are stored).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name: hello\nruntime: nodejs\nhandler: index.handler\n",
		"name: q\nruntime: python\nhandler: app.main\ntriggers:\n  - queue: {topic: t, batch: 5}\n  - schedule: rate(5 minutes)\n",
		"name: c\nruntime: nodejs\nhandler: a.b\ntriggers:\n  - schedule: cron(0 12 * * ? *)\n    timezone: Europe/Paris\n    payload: {a: [1, 2]}\nasync: {retries: 1, onFailure: {topic: x}}\n",
		"name: h\nruntime: http\ncommand: node s.js\nscale: {min: 1, max: 2}\nenvironment: {A: b}\n",
		"&a [*a]", "{", "name: [", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted but invalid: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Manifest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("round trip made it invalid: %v\n%s", err, b)
		}
	})
}

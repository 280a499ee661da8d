package sandbox

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestCPUWeightFollowsMemory(t *testing.T) {
	for _, c := range []struct{ mb, weight, shares int }{
		{128, 12, 128},
		{256, 25, 256},
		{1024, 100, 1024}, // the defaults at 1 GB
		{1769, 172, 1769},
		{10240, 1000, 10240},
		{0, 1, 2},                // clamped to the minimum
		{1 << 20, 10000, 262144}, // and the maximum
	} {
		if w := CPUWeight(c.mb); w != c.weight {
			t.Errorf("CPUWeight(%d) = %d, want %d", c.mb, w, c.weight)
		}
		if s := CPUShares(c.mb); s != c.shares {
			t.Errorf("CPUShares(%d) = %d, want %d", c.mb, s, c.shares)
		}
	}
}

func TestSummary(t *testing.T) {
	for _, c := range []struct {
		cs   []Control
		want string
	}{
		{[]Control{{Name: "a", On: true}, {Name: "b", On: true}}, "isolation: a, b on"},
		{[]Control{{Name: "a", On: true}, {Name: "b", Why: "no"}}, "isolation: a on; off: b: no"},
		{[]Control{{Name: "a", Why: "x"}, {Name: "b", Why: "y"}}, "isolation: off: a: x; b: y"},
	} {
		if got := Summary(c.cs); got != c.want {
			t.Errorf("Summary = %q, want %q", got, c.want)
		}
	}
}

func TestNoCoreDumps(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"5"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max core file size") {
			if f := strings.Fields(line); len(f) < 6 || f[4] != "0" || f[5] != "0" {
				t.Errorf("core dumps allowed: %q", line)
			}
			return
		}
	}
	t.Error("no core file size limit in /proc/<pid>/limits")
}

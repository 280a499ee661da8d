package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ternhq/tern/internal/runtime/python"
	"github.com/ternhq/tern/internal/sandbox"
)

// check is one line of `tern doctor`.
type check struct {
	name, status, detail string
	required             bool // its absence disables a runtime
}

func (e *env) doctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Show what each runtime needs on this host and whether it is there, and which isolation controls apply",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := doctorChecks()
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
			missing := 0
			for _, c := range checks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.name, c.status, c.detail)
				if c.required && c.status != "ok" {
					missing++
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if missing > 0 {
				return fmt.Errorf("%d runtime requirement(s) missing on this host", missing)
			}
			return nil
		},
	}
}

func doctorChecks() []check {
	var out []check
	if p, err := exec.LookPath("node"); err != nil {
		out = append(out, check{"runtime nodejs: node ≥ 18", "missing", "install Node.js 18 or later (Debian: apt-get install nodejs), or start tern serve with --node", true})
	} else {
		v, _ := exec.Command(p, "--version").Output()
		ver := strings.TrimSpace(string(v))
		status := "ok"
		var major int
		if _, err := fmt.Sscanf(ver, "v%d", &major); err != nil || major < 18 {
			status = "too old"
		}
		out = append(out, check{"runtime nodejs: node ≥ 18", status, p + " " + ver, true})
	}
	if p, err := python.Interpreter(); err != nil {
		out = append(out, check{"runtime python: python3 ≥ 3.9", "missing", err.Error(), true})
	} else {
		v, _ := exec.Command(p, "--version").Output()
		out = append(out, check{"runtime python: python3 ≥ 3.9", "ok", p + " " + strings.TrimSpace(string(v)), true})
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		out = append(out, check{"runtime http: /bin/sh", "missing", "runtime http runs its command through /bin/sh", true})
	} else {
		out = append(out, check{"runtime http: /bin/sh", "ok", "runs each function's command", true})
	}
	out = append(out, check{"runtime provided", "ok", "runs the package's own bootstrap executable; nothing to install", false})
	if p, err := exec.LookPath("go"); err != nil {
		out = append(out, check{"building Go functions: go", "missing", "only needed to build bootstrap executables with aws-lambda-go", false})
	} else {
		out = append(out, check{"building Go functions: go", "ok", p, false})
	}
	// Isolation: what the sandbox applies today, and what it does not yet.
	out = append(out,
		check{"isolation: process group", "on", "an instance and its children are killed together", false},
		check{"isolation: environment", "on", "instances get only the function's variables and the Lambda ones", false},
	)
	out = append(out, isolationChecks(sandbox.Controls())...)
	return append(out, isolationChecks(jailControls())...)
}

// jailControls sets a jail up in a temporary directory, as tern serve
// does in its data dir, to see which of its controls this host applies.
func jailControls() []sandbox.Control {
	dir, err := os.MkdirTemp("", "tern-doctor-")
	if err != nil {
		return []sandbox.Control{{Name: "jail", Why: err.Error()}}
	}
	defer os.RemoveAll(dir)
	j, err := sandbox.NewJail(sandbox.JailConfig{Dir: filepath.Join(dir, "jail")})
	if err != nil {
		return []sandbox.Control{{Name: "jail", Why: err.Error()}}
	}
	defer j.Close()
	return j.Controls()
}

// isolationChecks are the lines of the sandbox's controls: on with how, or
// off with why. None of them is required: instances run without them.
func isolationChecks(cs []sandbox.Control) []check {
	out := make([]check, 0, len(cs))
	for _, c := range cs {
		status := "off"
		if c.On {
			status = "on"
		}
		out = append(out, check{"isolation: " + c.Name, status, c.Why, false})
	}
	return out
}

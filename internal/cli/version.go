package cli

import (
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// versionLine says which build this is: the version (set with -ldflags
// "-X github.com/ternhq/tern/internal/cli.Version=v1.2.3", or the module's
// when installed with go install), the commit it was built from and its
// time (stamped by go build in a git checkout; "+dirty" with uncommitted
// changes), when the binary was built (its file's time), and the Go
// toolchain.
func versionLine() string {
	version, commit, when := Version, "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			commit += "+dirty"
		}
	}
	line := "tern " + version + " commit " + commit
	if when != "" {
		line += " (" + when + ")"
	}
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			line += ", built " + fi.ModTime().UTC().Format(time.RFC3339)
		}
	}
	return line + ", " + goruntime.Version() + " " + goruntime.GOOS + "/" + goruntime.GOARCH
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit and the build date",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// templates are the files `tern init` writes for each runtime (and style).
var templates = map[string]map[string]string{
	"nodejs": {
		"tern.yaml": "name: {{name}}\nruntime: nodejs\nhandler: index.handler\nmemory: 256\ntimeout: 30s\n",
		"index.js": `// A Lambda-style handler: the event is the HTTP request (function URL
// payload 2.0) when called through /fn/{{name}}, or the JSON you invoke it with.
exports.handler = async (event, context) => {
  console.log("invoked", context.awsRequestId);
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ hello: "{{name}}", path: event.rawPath ?? null }),
  };
};
`,
	},
	"nodejs-http": {
		"tern.yaml": "name: {{name}}\nruntime: nodejs\nhandler: index.handler\nstyle: http\n",
		"index.js": `// An Express-style handler: (req, res).
exports.handler = async (req, res) => {
  res.status(200).json({ hello: "{{name}}", method: req.method, path: req.path, query: req.query });
};
`,
	},
	"python": {
		"tern.yaml": "name: {{name}}\nruntime: python\nhandler: app.handler\nmemory: 256\ntimeout: 30s\n",
		"app.py": `import json
import logging

logger = logging.getLogger()


def handler(event, context):
    """A Lambda-style handler: the event is the HTTP request (function URL
    payload 2.0) when called through /fn/{{name}}, or the JSON you invoke it with."""
    logger.info("invoked %s", context.aws_request_id)
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": "{{name}}", "path": event.get("rawPath")}),
    }
`,
	},
	"provided": {
		"tern.yaml":   "name: {{name}}\nruntime: provided\n",
		".ternignore": "*.go\ngo.mod\ngo.sum\n",
		"main.go": `// A Go function for Tern's provided runtime, written as for AWS Lambda.
// Build the executable Tern runs, then deploy:
//
//	go mod init {{name}} && go mod tidy
//	CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap .
//	tern deploy
package main

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	body, _ := json.Marshal(map[string]string{"hello": "{{name}}", "path": req.RawPath})
	return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(body)}, nil
}

func main() { lambda.Start(handle) }
`,
	},
}

var nameRe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func (e *env) initCmd() *cobra.Command {
	var runtime, name, style string
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Create a function folder: tern.yaml and a handler for a runtime",
		Long:  "Create DIR (default: the current folder) with a tern.yaml and a hello-world handler for --runtime nodejs (default), python or provided (Go with aws-lambda-go). Existing files are never overwritten.",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			key := runtime
			switch {
			case style == "http" && runtime == "nodejs":
				key = "nodejs-http"
			case style != "" && style != "lambda":
				return usageError{fmt.Errorf("--style %s: only --runtime nodejs has style http", style)}
			}
			files, ok := templates[key]
			if !ok {
				return usageError{fmt.Errorf("--runtime: want nodejs, python or provided, got %q", runtime)}
			}
			if name == "" {
				abs, err := filepath.Abs(dir)
				if err != nil {
					return err
				}
				name = strings.Trim(nameRe.ReplaceAllString(filepath.Base(abs), "-"), "-_")
				if len(name) > 64 {
					name = name[:64]
				}
				if name == "" {
					name = "hello"
				}
			}
			if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`).MatchString(name) {
				return usageError{fmt.Errorf("--name %q: use letters, digits, - and _ (at most 64)", name)}
			}
			names := make([]string, 0, len(files))
			for f := range files {
				names = append(names, f)
				if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
					return fmt.Errorf("%s already exists; tern init never overwrites files", filepath.Join(dir, f))
				} else if !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			sort.Strings(names)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for _, f := range names {
				body := strings.ReplaceAll(files[f], "{{name}}", name)
				if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "created %s function %q in %s: %s\n", runtime, name, dir, strings.Join(names, ", "))
			if runtime == "provided" {
				fmt.Fprintln(e.stdout, "build it as main.go says, then: tern deploy", dir)
			} else {
				fmt.Fprintln(e.stdout, "next: tern deploy", dir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "nodejs", "nodejs, python or provided")
	f.StringVar(&name, "name", "", "function name (default: the folder's name)")
	f.StringVar(&style, "style", "", "http for an Express-style (req, res) nodejs handler")
	return cmd
}

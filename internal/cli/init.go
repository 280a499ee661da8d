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

// readmeDeploy is the line every template's README.md ends with; {{dir}} is
// the folder as given to tern init.
const readmeDeploy = "tern deploy {{dir}} && curl localhost:8080/fn/{{name}}"

// templates are the files `tern init` writes for each kind of function (a
// runtime, or nodejs-http for an Express-style nodejs handler). {{name}} is
// the function's name and {{dir}} the folder as given.
var templates = map[string]map[string]string{
	"nodejs": {
		"tern.yaml": "name: {{name}}\nruntime: nodejs\nhandler: index.handler\nmemory: 256\ntimeout: 30s\n",
		"README.md": "# {{name}}\n\nA Node.js function with a Lambda-style handler. Deploy and call it: `" + readmeDeploy + "`\n",
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
		"README.md": "# {{name}}\n\nA Node.js function with an Express-style (req, res) handler. Deploy and call it: `" + readmeDeploy + "`\n",
		"index.js": `// An Express-style handler: (req, res), built from the HTTP request.
module.exports = (req, res) => {
  res.status(200).json({ hello: "{{name}}", method: req.method, path: req.path, query: req.query });
};
`,
	},
	"python": {
		"tern.yaml": "name: {{name}}\nruntime: python\nhandler: app.handler\nmemory: 256\ntimeout: 30s\n",
		"README.md": "# {{name}}\n\nA Python function with a Lambda-style handler. Deploy and call it: `" + readmeDeploy + "`\n",
		"app.py": `import json
import logging

logger = logging.getLogger()


def handler(event, context):
    """A Lambda-style handler: the event is the HTTP request (function URL
    payload 2.0) when called through /fn/{{name}}, or the JSON you invoke it with."""
    logger.info("invoked %s", context.aws_request_id)
    path = event.get("rawPath") if isinstance(event, dict) else None
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": "{{name}}", "path": path}),
    }
`,
	},
	"go": {
		"tern.yaml":   "name: {{name}}\nruntime: provided\n",
		".ternignore": "*.go\ngo.mod\ngo.sum\n",
		"README.md": "# {{name}}\n\nA Go function (aws-lambda-go) for runtime provided. Build the bootstrap executable, then deploy and call it: " +
			"`(cd {{dir}} && go mod tidy && CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap .) && " + readmeDeploy + "`\n",
		"go.mod": "module {{name}}\n\ngo 1.26\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n",
		"main.go": `// A Go function for Tern's provided runtime, written as for AWS Lambda.
// Tern runs the executable named bootstrap; build it with
//
//	go mod tidy && CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap .
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
	"http": {
		"tern.yaml": "name: {{name}}\nruntime: http\ncommand: node server.js\nconcurrency: 8\n",
		"README.md": "# {{name}}\n\nA plain Node.js HTTP server (runtime http) listening on $PORT. Deploy and call it: `" + readmeDeploy + "`\n",
		"server.js": `// Runtime http: Tern starts this server and proxies /fn/{{name}}/... to it
// (the /fn/{{name}} prefix removed). It must listen on $PORT.
const http = require("http");

http
  .createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ hello: "{{name}}", method: req.method, url: req.url }));
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
`,
	},
}

var funcNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func (e *env) initCmd() *cobra.Command {
	var runtime, style, dir string
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Create a function folder: tern.yaml, a hello-world handler and a README",
		Long: "Create the folder --dir (default: ./NAME) with a tern.yaml naming the function NAME, a hello-world handler " +
			"and a README.md saying how to deploy and call it. --runtime is nodejs (default; --style http for an " +
			"Express-style (req, res) handler), python, go (runtime provided with aws-lambda-go; provided is an alias) " +
			"or http (a plain Node.js HTTP server on $PORT). Existing files are never overwritten.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !funcNameRe.MatchString(name) {
				return usageError{fmt.Errorf("name %q: use letters, digits, - and _, starting with a letter or digit (at most 64)", name)}
			}
			key := runtime
			if key == "provided" {
				key = "go"
			}
			if _, ok := templates[key]; !ok || key == "nodejs-http" {
				return usageError{fmt.Errorf("--runtime: want nodejs, python, go or http, got %q", runtime)}
			}
			switch style {
			case "", "lambda":
			case "http":
				if key != "nodejs" {
					return usageError{fmt.Errorf("--style http is only for --runtime nodejs")}
				}
				key = "nodejs-http"
			default:
				return usageError{fmt.Errorf("--style: want lambda or http, got %q", style)}
			}
			if dir == "" {
				dir = name
			}
			files := templates[key]
			names := make([]string, 0, len(files))
			for f := range files {
				names = append(names, f)
				if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
					return fmt.Errorf("%s already exists; tern init never overwrites files", filepath.Join(dir, f))
				} else if !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			sort.Strings(names)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			r := strings.NewReplacer("{{name}}", name, "{{dir}}", dir)
			for _, f := range names {
				// O_EXCL: a file that appeared since the check is not overwritten either.
				fh, err := os.OpenFile(filepath.Join(dir, f), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				_, err = fh.WriteString(r.Replace(files[f]))
				if cerr := fh.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "created %s function %q in %s: %s\n", key, name, dir, strings.Join(names, ", "))
			if key == "go" {
				fmt.Fprintf(e.stdout, "next: (cd %s && go mod tidy && CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap .) && tern deploy %s\n", dir, dir)
			} else {
				fmt.Fprintln(e.stdout, "next: tern deploy", dir)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "nodejs", "nodejs, python, go (alias provided) or http")
	f.StringVar(&style, "style", "", "http for an Express-style (req, res) nodejs handler")
	f.StringVar(&dir, "dir", "", "folder to create (default: ./NAME)")
	return cmd
}

package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

// buildLambdaGo builds testdata/lambdago, a function using
// github.com/aws/aws-lambda-go, as a static linux binary named bootstrap,
// the way one is packaged for Lambda's provided.al2023 runtime.
func buildLambdaGo(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "lambdago", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	gomod := "module lambdaecho\n\ngo 1.26\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	// The checksums, so that the build verifies what the module proxy
	// serves without asking a checksum database.
	sum, err := os.ReadFile(filepath.Join("testdata", "lambdago", "go.sum.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-tags", "lambda.norpc", "-o", "bootstrap", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the aws-lambda-go function: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProvidedAWSLambdaGo runs an unchanged aws-lambda-go function on
// Tern's HTTP Runtime API.
func TestProvidedAWSLambdaGo(t *testing.T) {
	bin := buildLambdaGo(t)
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	dir := testserver.WriteFunction(t, map[string]string{"tern.yaml": "name: goecho\nruntime: provided\n"})
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	s.DeployDir(dir)

	status, h, body := s.Do("POST", "/fn/goecho/some/path?x=1", strings.NewReader(`{"k":"v"}`), map[string]string{"Content-Type": "application/json"})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	var got struct {
		RawPath, Method, Body, RequestID, Arn, Function, Trace string
		Query                                                  map[string]string
		HasDeadline                                            bool
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if got.RawPath != "/some/path" || got.Method != "POST" || got.Body != `{"k":"v"}` || got.Query["x"] != "1" ||
		got.RequestID != h.Get("X-Tern-Request-Id") || !strings.Contains(got.Arn, ":function:goecho:") ||
		got.Function != "goecho" || !got.HasDeadline || !strings.HasPrefix(got.Trace, "Root=1-") {
		t.Errorf("the function saw %+v", got)
	}
	status, _, body = s.Do("POST", "/v1/functions/goecho/invoke", strings.NewReader(`{"rawPath":"/fail"}`), map[string]string{"Authorization": "Bearer " + s.Token()})
	var e struct{ ErrorType, ErrorMessage string }
	if status != 502 || json.Unmarshal(body, &e) != nil || e.ErrorMessage != "asked to fail" || e.ErrorType == "" {
		t.Errorf("error: %d %s", status, body)
	}
	// A client context (Lambda's Invoke API: base64 JSON) and a caller's
	// trace header reach the function.
	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"tenant":"t1"}}`))
	status, _, body = s.Do("POST", "/v1/functions/goecho/invoke", strings.NewReader(`{"rawPath":"/cc"}`), map[string]string{
		"Authorization": "Bearer " + s.Token(), "X-Amz-Client-Context": cc, "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"})
	var res struct{ Body string }
	var echoed struct {
		Custom map[string]string
		Trace  string
	}
	if status != 200 || json.Unmarshal(body, &res) != nil || json.Unmarshal([]byte(res.Body), &echoed) != nil ||
		echoed.Custom["tenant"] != "t1" || echoed.Trace != "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1" {
		t.Errorf("client context and trace: %d %s", status, body)
	}
	if status, _, _ := s.Do("POST", "/v1/functions/goecho/invoke", strings.NewReader(`{}`), map[string]string{
		"Authorization": "Bearer " + s.Token(), "X-Amz-Client-Context": "not base64!"}); status != 400 {
		t.Errorf("bad client context: %d", status)
	}
	// Warm: the same process serves again.
	for range 5 {
		if status, _, _ := s.Do("GET", "/fn/goecho/", nil, nil); status != 200 {
			t.Fatalf("warm: %d", status)
		}
	}
	st, err := s.Client.Stats(context.Background(), "goecho")
	if err != nil || st.Counts.ColdStarts != 1 {
		t.Errorf("stats %+v %v", st, err)
	}

	// A package without an executable bootstrap is refused at deploy.
	zip := testserver.Zip(t, [2]string{"tern.yaml", "name: nobin\nruntime: provided\n"}, [2]string{"README", "no bootstrap here"})
	status, _, body = s.Do("POST", "/v1/functions", bytes.NewReader(zip), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 400 || !strings.Contains(string(body), "Runtime.InvalidEntrypoint") {
		t.Errorf("no bootstrap: %d %s", status, body)
	}
}

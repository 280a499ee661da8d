package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
	"github.com/ternhq/tern/internal/api"
)

// zipTime is every entry's modification time, so packages differ only in
// what they hold.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// functionZip builds a code package in memory: tern.yaml naming the
// function, and the hello-world handler as index.js.
func functionZip(name string, index []byte) ([]byte, error) {
	return functionZipWith(name, "", index)
}

// functionZipWith is functionZip with extra manifest lines.
func functionZipWith(name, extra string, index []byte) ([]byte, error) {
	manifest := "name: " + name + "\nruntime: nodejs\nhandler: index.handler\n" + extra
	return zipPackage(zipEntry{"tern.yaml", []byte(manifest), 0o644}, zipEntry{"index.js", index, 0o644})
}

// deploy uploads a package (POST /v1/functions) and returns how long the
// request took.
func (e *env) deploy(ctx context.Context, t *benchkit.Tern, pkg []byte) (time.Duration, error) {
	s := time.Now()
	_, _, err := t.API(ctx, e.api, http.MethodPost, "/v1/functions", pkg)
	return time.Since(s), err
}

// deployNamed builds and uploads a hello-world function called name.
func (e *env) deployNamed(ctx context.Context, t *benchkit.Tern, name string) error {
	pkg, err := functionZip(name, e.helloJS)
	if err != nil {
		return err
	}
	_, err = e.deploy(ctx, t, pkg)
	return err
}

// remove deletes a function (its instances stop before the answer).
func (e *env) remove(ctx context.Context, t *benchkit.Tern, name string) error {
	_, _, err := t.API(ctx, e.api, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil)
	return err
}

// stats is GET /v1/functions/{name}/stats, as the API writes it.
type stats = api.StatsView

func (e *env) stats(ctx context.Context, t *benchkit.Tern, name string) (*stats, error) {
	_, b, err := t.API(ctx, e.api, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/stats", nil)
	if err != nil {
		return nil, err
	}
	var s stats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// initDuration reads the Init Duration of the function's first REPORT line
// that has one (its cold start). Logs are written asynchronously, so it
// polls for up to 3s; 0 if none is found.
func (e *env) initDuration(ctx context.Context, t *benchkit.Tern, name string) time.Duration {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		_, out, err := t.API(ctx, e.api, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/logs", nil)
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				var en struct {
					Message string `json:"message"`
				}
				if json.Unmarshal(sc.Bytes(), &en) != nil || !strings.HasPrefix(en.Message, "REPORT") {
					continue
				}
				_, after, ok := strings.Cut(en.Message, "Init Duration: ")
				if !ok {
					continue
				}
				v, _, _ := strings.Cut(after, " ")
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					return time.Duration(f * float64(time.Millisecond))
				}
			}
		}
		if benchkit.Sleep(ctx, 20*time.Millisecond) != nil {
			return 0
		}
	}
	return 0
}

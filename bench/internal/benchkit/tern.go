package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tern is a running `tern serve`.
type Tern struct {
	*Child
	URL     string // http://127.0.0.1:PORT
	Token   string // the admin token
	LogPath string // its stdout and stderr
	DataDir string
	Bin     string
}

// TernOptions say how to start tern serve.
type TernOptions struct {
	Bin  string   // the tern binary
	Node string   // node, for its instances
	Dir  string   // data dir and log go here
	Args []string // more serve flags
}

// StartTern starts tern serve on a free loopback port with a new data dir
// under opt.Dir and waits until /healthz answers.
func StartTern(ctx context.Context, cs *Children, opt TernOptions) (*Tern, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	t := &Tern{DataDir: filepath.Join(opt.Dir, "data"), LogPath: filepath.Join(opt.Dir, "tern.log"), Bin: opt.Bin}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(t.LogPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"serve", "--listen", addr, "--data-dir", t.DataDir,
		"--node", opt.Node, "--shutdown-timeout", "2s"}, opt.Args...)
	cmd := exec.Command(opt.Bin, args...)
	cmd.Env = append(os.Environ(), "TERN_DATA_DIR="+t.DataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	Logf("starting %s", strings.Join(cmd.Args, " "))
	if t.Child, err = cs.Start("tern serve", cmd, true); err != nil {
		return nil, err
	}
	t.URL = "http://" + addr
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if t.Exited() {
			return nil, fmt.Errorf("tern serve exited during startup:\n%s", Tail(t.LogPath, 20))
		}
		resp, err := client.Get(t.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("tern serve not healthy after 30s:\n%s", Tail(t.LogPath, 20))
		}
		if err := Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	tok, err := os.ReadFile(filepath.Join(t.DataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	t.Token = strings.TrimSpace(string(tok))
	Logf("tern is up at %s (pid %d)", t.URL, t.PID())
	return t, nil
}

// CLI runs a tern client command against t and returns its standard output.
func (t *Tern) CLI(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, t.Bin, args...)
	cmd.Env = append(os.Environ(), "TERN_SERVER="+t.URL, "TERN_TOKEN="+t.Token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("tern %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// API sends one control API request with the admin token and returns the
// status and body. Statuses other than 2xx are errors too.
func (t *Tern) API(ctx context.Context, client *http.Client, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/zip")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, b, fmt.Errorf("%s %s: HTTP %d: %.300s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, b, nil
}

// InstanceEnv is the environment tern gives its instances (internal/runtime),
// which the node baselines get too instead of the benchmark's own: variables
// such as NODE_EXTRA_CA_CERTS or NODE_OPTIONS would slow node's start-up and
// make the comparison unfair.
func InstanceEnv() []string {
	return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TZ=:UTC", "LANG=en_US.UTF-8"}
}

// StartNode starts the baseline server (bench/baseline/server.js) with
// listen as its argument (a port, or fd:N for an inherited listener in
// extra, which become fds 3, 4, ...). It does not wait for it.
func StartNode(cs *Children, nodeBin, root, listen string, extra ...*os.File) (*Child, error) {
	script := filepath.Join(root, "bench", "baseline", "server.js")
	cmd := exec.Command(nodeBin, script, listen)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = InstanceEnv()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = extra
	return cs.Start("node baseline", cmd, false)
}

// FirstRequest sends one GET on a new connection and checks the answer is
// 200 with body want.
func FirstRequest(ctx context.Context, url string, want []byte) (time.Duration, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 40 * time.Second}
	s := time.Now()
	status, body, err := Get(ctx, client, url, nil)
	d := time.Since(s)
	if err != nil {
		return d, err
	}
	if status != http.StatusOK || !bytes.Equal(body, want) {
		return d, fmt.Errorf("GET %s: HTTP %d %.200q", url, status, body)
	}
	return d, nil
}

// NodeCold times spawning the baseline server until its first successful
// response (200, body want), polling with a new connection every
// millisecond.
func NodeCold(ctx context.Context, cs *Children, nodeBin, root string, want []byte) (time.Duration, error) {
	port, err := FreePort()
	if err != nil {
		return 0, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	s := time.Now()
	c, err := StartNode(cs, nodeBin, root, strconv.Itoa(port))
	if err != nil {
		return 0, err
	}
	defer c.Stop(0)
	deadline := s.Add(20 * time.Second)
	for {
		status, body, err := Get(ctx, client, url, nil)
		d := time.Since(s)
		if err == nil {
			if status != http.StatusOK || !bytes.Equal(body, want) {
				return 0, fmt.Errorf("baseline: HTTP %d %.200q", status, body)
			}
			return d, nil
		}
		if c.Exited() {
			return 0, errors.New("baseline node server exited before answering")
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("baseline not answering after 20s: %w", err)
		}
		if err := Sleep(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
}

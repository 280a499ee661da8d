package runtime

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ternhq/tern/internal/metering"
)

// Runtime http: the package runs a command that serves HTTP on $PORT
// (listening on 127.0.0.1). Tern starts it and waits until the port
// answers. HTTP triggers are proxied to it with streaming bodies (Proxy).
// An invocation that carries an event instead (a direct invocation) is
// turned into a request: a function URL event becomes that HTTP request,
// any other payload a POST of it to /; the app's response becomes the
// structured function URL result, buffered.

// startHTTPApp starts spec's command with PORT set and waits until it
// accepts connections.
func (l *Launcher) startHTTPApp(ctx context.Context, spec Spec) (*Instance, error) {
	begin := time.Now()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	spec.Env = withEnv(spec.Env, "PORT", strconv.Itoa(port))
	if _, ok := spec.Env["PATH"]; !ok {
		// The interpreters Tern found go first, so that "node server.js"
		// means the node Tern runs.
		spec.Env["PATH"] = l.interpreterPath()
	}
	inst, err := launch(l, &spec, "/bin/sh", []string{"-c", shellCommand(spec.Command)}, false, false)
	if err != nil {
		return nil, err
	}
	inst.httpAddr = "127.0.0.1:" + strconv.Itoa(port)
	inst.httpClient = &http.Client{
		Transport: &http.Transport{
			MaxIdleConnsPerHost: max(spec.Concurrency, 1),
			DisableCompression:  true,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			// Below Node's 5 s keep-alive, so Tern does not send a request
			// on a connection the app is closing.
			IdleConnTimeout: 4 * time.Second,
		},
		// A redirect is the app's answer, not something Tern follows.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for {
		conn, err := net.DialTimeout("tcp", inst.httpAddr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
			inst.initDuration = time.Since(begin)
			inst.readyOne.Do(func() { close(inst.ready) })
			return inst, nil
		}
		select {
		case <-inst.proc.Done():
			msg := "the command exited before it listened on $PORT"
			if e := inst.proc.ExitError(); e != nil {
				msg += ": " + e.Error()
			}
			inst.Stop()
			return nil, &InitError{FunctionError: FunctionError{Type: "Runtime.ExitError", Body: errorBody("Runtime.ExitError", msg)}, Duration: time.Since(begin)}
		case <-ctx.Done():
			inst.Stop()
			return nil, fmt.Errorf("runtime: waiting for the app to listen on port %d: %w", port, context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("runtime: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func withEnv(env map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(env)+1)
	for a, b := range env {
		out[a] = b
	}
	out[k] = v
	return out
}

// urlEvent is the part of a function URL event an HTTP app needs.
type urlEvent struct {
	Version        string            `json:"version"`
	RawPath        string            `json:"rawPath"`
	RawQueryString string            `json:"rawQueryString"`
	Cookies        []string          `json:"cookies"`
	Headers        map[string]string `json:"headers"`
	RequestContext struct {
		HTTP struct {
			Method   string `json:"method"`
			SourceIP string `json:"sourceIp"`
		} `json:"http"`
	} `json:"requestContext"`
	Body            string `json:"body"`
	IsBase64Encoded bool   `json:"isBase64Encoded"`
}

// sendHTTP runs c against the app and answers it.
func (i *Instance) sendHTTP(c *call) {
	ctx, cancel := context.WithDeadline(context.Background(), c.inv.Deadline)
	defer cancel()
	res, err := i.doHTTP(ctx, c.inv)
	if err != nil {
		if ctx.Err() != nil {
			return // the deadline: Invoke times the call out
		}
		res = &Result{Error: &FunctionError{Type: "Runtime.HTTPError", Body: errorBody("Runtime.HTTPError", err.Error())}}
	}
	i.answer(c, res)
}

func (i *Instance) doHTTP(ctx context.Context, inv *Invocation) (*Result, error) {
	var ev urlEvent
	var req *http.Request
	var err error
	if json.Unmarshal(inv.Payload, &ev) == nil && ev.Version == "2.0" && ev.RequestContext.HTTP.Method != "" {
		body := []byte(ev.Body)
		if ev.IsBase64Encoded {
			if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
				return nil, fmt.Errorf("event body: %w", err)
			}
		}
		path := ev.RawPath
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u := &url.URL{Scheme: "http", Host: i.httpAddr, RawQuery: ev.RawQueryString}
		if p, err := url.PathUnescape(path); err == nil {
			u.Path, u.RawPath = p, path
		} else {
			u.Path = path
		}
		if req, err = http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, u.String(), bytes.NewReader(body)); err != nil {
			return nil, err
		}
		for k, v := range ev.Headers {
			switch strings.ToLower(k) {
			case "host", "content-length", "connection", "transfer-encoding":
			default:
				req.Header.Set(k, v)
			}
		}
		if h := ev.Headers["host"]; h != "" {
			req.Host = h
		}
		if len(ev.Cookies) > 0 {
			req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
		}
		if ip := ev.RequestContext.HTTP.SourceIP; ip != "" {
			req.Header.Set("X-Forwarded-For", ip)
		}
	} else {
		// A direct invocation: POST the payload.
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, "http://"+i.httpAddr+"/", bytes.NewReader(inv.Payload)); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Forwarded-Prefix", "/fn/"+i.spec.Function)
	req.Header.Set("X-Tern-Request-Id", inv.RequestID)
	if inv.TraceID != "" {
		req.Header.Set("X-Amzn-Trace-Id", inv.TraceID)
	}
	resp, err := i.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, i.l.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the app's response: %w", err)
	}
	if int64(len(body)) > i.l.cfg.MaxResponseBytes {
		msg := "response payload exceeds the maximum of " + strconv.FormatInt(i.l.cfg.MaxResponseBytes, 10) + " bytes"
		return &Result{Error: &FunctionError{Type: "Function.ResponseSizeTooLarge", Body: errorBody("Function.ResponseSizeTooLarge", msg)}}, nil
	}
	out := struct {
		StatusCode      int               `json:"statusCode"`
		Headers         map[string]string `json:"headers"`
		Cookies         []string          `json:"cookies,omitempty"`
		Body            string            `json:"body"`
		IsBase64Encoded bool              `json:"isBase64Encoded"`
	}{StatusCode: resp.StatusCode, Headers: make(map[string]string, len(resp.Header))}
	for k, vs := range resp.Header {
		switch k {
		case "Set-Cookie":
			out.Cookies = append(out.Cookies, vs...)
		case "Content-Length", "Transfer-Encoding", "Connection":
		default:
			out.Headers[strings.ToLower(k)] = strings.Join(vs, ",")
		}
	}
	if textual(resp.Header.Get("Content-Type")) && utf8.Valid(body) {
		out.Body = string(body)
	} else {
		out.Body, out.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &Result{Payload: b}, nil
}

func textual(ct string) bool {
	ct = strings.ToLower(ct)
	return ct == "" || strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") || strings.Contains(ct, "xml") ||
		strings.Contains(ct, "javascript") || strings.Contains(ct, "x-www-form-urlencoded")
}

// Proxy serves r with the app, streaming the request and response bodies,
// as one invocation with request id rid: START, END and REPORT lines, the
// app's output tagged with rid, and the function's timeout from deadline.
// prefix is what the app's paths are relative to (X-Forwarded-Prefix) and
// path the rest of the escaped request path. Errors: ErrTimeout (the
// instance was killed), ErrCrashed (the app went away) or the client's
// context error; nothing has been written to w for those unless the
// response had begun.
func (i *Instance) Proxy(w http.ResponseWriter, r *http.Request, rid, prefix, path string, deadline time.Time, cold bool) error {
	if i.httpAddr == "" {
		return fmt.Errorf("runtime: %s is not an http app", i.id)
	}
	inv := &Invocation{RequestID: rid, Deadline: deadline, Trigger: metering.TriggerHTTP}
	c, done := i.begin(inv)
	defer done()
	i.markCPU()
	start := time.Now()

	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	var proxyErr error
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = i.httpAddr
			pr.Out.URL.RawPath = path
			if p, err := url.PathUnescape(path); err == nil {
				pr.Out.URL.Path = p
			} else {
				pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
			}
			pr.Out.Host = r.Host
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Forwarded-Prefix", prefix)
			pr.Out.Header.Set("X-Tern-Request-Id", rid)
		},
		Transport:     i.httpClient.Transport,
		FlushInterval: -1, // stream
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("X-Tern-Request-Id") // Tern's, set on the response already
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			proxyErr = err
		},
	}
	aborted := false
	func() {
		// Once the app's status line is out, ReverseProxy reports a broken
		// body copy (deadline, client gone, app gone) by panicking with
		// http.ErrAbortHandler; the accounting below must still run.
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				aborted = true
			}
		}()
		rp.ServeHTTP(w, r.WithContext(ctx))
	}()
	dur := time.Since(start)

	var err error
	var tooBig *http.MaxBytesError
	switch {
	case proxyErr == nil && !aborted:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		i.Stop()
		err = ErrTimeout
	case r.Context().Err() != nil:
		err = context.Cause(r.Context())
	case errors.As(proxyErr, &tooBig):
		err = tooBig // the client's body was too large: the app is fine
	case i.exitedSoon(proxyErr):
		err = fmt.Errorf("%w: the app exited", ErrCrashed)
		if i.proc.OOMKilled() {
			err = fmt.Errorf("%w: the app exceeded its memory limit of %d MB (%s)", ErrCrashed, i.spec.MemoryMB, ErrTypeOutOfMemory)
		}
	case i.isStopped():
		err = ErrStopped
	default:
		err = fmt.Errorf("%w: %v", ErrAppConnection, proxyErr)
	}
	if aborted {
		err = fmt.Errorf("%w: %w", ErrAborted, errOr(err, ErrAppConnection))
	}
	err = i.failure(err)
	i.end(c, dur, cold, nil, err)
	i.meter(inv, start, dur, cold, nil, err)
	return err
}

// shellCommand makes a simple command ("node server.js") replace the
// shell (exec), so the app itself is the instance's process: its CPU and
// memory are what is metered, and signals reach it. A command using the
// shell's syntax (several commands, pipes, redirections, expansions,
// variable assignments) runs as written.
func shellCommand(cmd string) string {
	c := strings.TrimSpace(cmd)
	if c == "" || strings.ContainsAny(c, ";&|<>()$`\\\n\"'*?[]{}~#!") {
		return cmd
	}
	first, _, _ := strings.Cut(c, " ")
	if strings.Contains(first, "=") || first == "exec" {
		return cmd
	}
	return "exec " + c
}

// exitedSoon reports whether the app's process exits within a moment of
// a failed proxy connection (err): an app that refused the connection has
// no listener left, so it is gone or going, and its exit is waited for
// longer (reaping it takes a while on a busy host) than after another
// failure, where the app usually lives on.
func (i *Instance) exitedSoon(err error) bool {
	wait := 50 * time.Millisecond
	if errors.Is(err, syscall.ECONNREFUSED) {
		wait = 2 * time.Second
	}
	select {
	case <-i.proc.Done():
		return true
	case <-time.After(wait):
		return false
	}
}

func (i *Instance) isStopped() bool {
	select {
	case <-i.stopped:
		return true
	default:
		return false
	}
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// interpreterPath is a PATH with the directories of the interpreters Tern
// found first.
func (l *Launcher) interpreterPath() string {
	var dirs []string
	for _, k := range l.kinds {
		if k.path != "" {
			dirs = append(dirs, filepath.Dir(k.path))
		}
	}
	sort.Strings(dirs)
	dirs = append(dirs, "/usr/local/bin", "/usr/bin", "/bin")
	return strings.Join(slices.Compact(dirs), ":")
}

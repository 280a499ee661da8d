// Package client calls Tern's control API. The CLI uses it; so can any Go
// program.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/registry"
)

// Client talks to one Tern server.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client for baseURL with token.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{}}
}

// Error is an error answer from the server.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d", e.Status)
	}
	return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
}

// FunctionError is a function's own error: Body is its error JSON.
type FunctionError struct {
	Type string
	Body []byte
}

func (e *FunctionError) Error() string { return "function error: " + e.Type }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Tern server at %s: %w", c.BaseURL, err)
	}
	return resp, nil
}

// decode reads a JSON answer into v, or returns the error the server sent.
func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if v == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	return nil
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.Header.Get("X-Tern-Function-Error") != "" {
		return &FunctionError{Type: resp.Header.Get("X-Tern-Error-Type"), Body: b}
	}
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

// Deploy uploads a zip package.
func (c *Client) Deploy(ctx context.Context, pkg io.Reader) (*api.FunctionView, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/functions", pkg, "application/zip")
	if err != nil {
		return nil, err
	}
	var v api.FunctionView
	return &v, decode(resp, &v)
}

// List returns every function's current version.
func (c *Client) List(ctx context.Context) ([]api.FunctionView, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/functions", nil, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Functions []api.FunctionView `json:"functions"`
	}
	return out.Functions, decode(resp, &out)
}

// Get returns one function as the server shows it.
func (c *Client) Get(ctx context.Context, name string) (json.RawMessage, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name), nil, "")
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	return raw, decode(resp, &raw)
}

// Stats returns a function's invocation counts and instances.
func (c *Client) Stats(ctx context.Context, name string) (*api.StatsView, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/stats", nil, "")
	if err != nil {
		return nil, err
	}
	var v api.StatsView
	return &v, decode(resp, &v)
}

// SetAlias points an alias at one version (routes with one entry of weight
// 100) or splits it between two.
func (c *Client) SetAlias(ctx context.Context, fn, alias string, routes []registry.Route) (*registry.Alias, error) {
	b, err := json.Marshal(api.AliasRequest{Routes: routes})
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPut, "/v1/functions/"+url.PathEscape(fn)+"/aliases/"+url.PathEscape(alias), strings.NewReader(string(b)), "application/json")
	if err != nil {
		return nil, err
	}
	var a registry.Alias
	return &a, decode(resp, &a)
}

// Aliases lists a function's aliases.
func (c *Client) Aliases(ctx context.Context, fn string) ([]registry.Alias, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(fn)+"/aliases", nil, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Aliases []registry.Alias `json:"aliases"`
	}
	return out.Aliases, decode(resp, &out)
}

// DeleteAlias removes an alias.
func (c *Client) DeleteAlias(ctx context.Context, fn, alias string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(fn)+"/aliases/"+url.PathEscape(alias), nil, "")
	if err != nil {
		return err
	}
	return decode(resp, nil)
}

// Rollback moves a function's current version back one version.
func (c *Client) Rollback(ctx context.Context, fn string) (*api.FunctionView, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/functions/"+url.PathEscape(fn)+"/rollback", nil, "")
	if err != nil {
		return nil, err
	}
	var v api.FunctionView
	return &v, decode(resp, &v)
}

// Delete removes a function.
func (c *Client) Delete(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/functions/"+url.PathEscape(name), nil, "")
	if err != nil {
		return err
	}
	return decode(resp, nil)
}

// Invoke runs a function with payload and returns its result. A function
// error is a *FunctionError.
func (c *Client) Invoke(ctx context.Context, name string, payload []byte) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/functions/"+url.PathEscape(name)+"/invoke", strings.NewReader(string(payload)), "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, readError(resp)
	}
	return io.ReadAll(resp.Body)
}

// LogQuery selects log entries.
type LogQuery struct {
	Since     string // a duration back from now, or an RFC 3339 time
	Until     string // the same forms; not with Follow
	RequestID string
	Grep      string
	Follow    bool
}

// Logs calls fn for each log entry until the server ends the stream (or,
// when following, until ctx is done).
func (c *Client) Logs(ctx context.Context, name string, q LogQuery, fn func(*logs.Entry) error) error {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Until != "" {
		v.Set("until", q.Until)
	}
	if q.RequestID != "" {
		v.Set("request", q.RequestID)
	}
	if q.Grep != "" {
		v.Set("grep", q.Grep)
	}
	if q.Follow {
		v.Set("follow", "true")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/functions/"+url.PathEscape(name)+"/logs?"+v.Encode(), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e logs.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("reading logs: %w", err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("reading logs: %w", err)
	}
	return nil
}

// Healthy reports whether the server answers /healthz.
func (c *Client) Healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/healthz", nil, "")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

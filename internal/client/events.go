package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/metering"
)

// doJSON sends v as JSON (nil: no body) and decodes the answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, v, out any) error {
	var body io.Reader
	ct := ""
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	return decode(resp, out)
}

// InvokeAsync queues an event for a function ("name" or "name@qualifier")
// and returns once the server stored it. A non-empty idempotency key makes
// resubmissions of the same key a no-op.
func (c *Client) InvokeAsync(ctx context.Context, name string, payload []byte, idempotencyKey string) (*events.Accepted, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/functions/"+url.PathEscape(name)+"/invoke", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tern-Invocation-Type", "Event")
	if idempotencyKey != "" {
		req.Header.Set("X-Tern-Idempotency-Key", idempotencyKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Tern server at %s: %w", c.BaseURL, err)
	}
	var a events.Accepted
	return &a, decode(resp, &a)
}

// Publish stores a message on a topic; attrs become its attributes.
func (c *Client) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (*events.Published, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/topics/"+url.PathEscape(topic)+"/messages", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	for k, v := range attrs {
		req.Header.Set("X-Tern-Attr-"+k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Tern server at %s: %w", c.BaseURL, err)
	}
	var p events.Published
	return &p, decode(resp, &p)
}

// CreateTopic creates a topic.
func (c *Client) CreateTopic(ctx context.Context, cfg events.TopicConfig) (*events.TopicInfo, error) {
	var t events.TopicInfo
	return &t, c.doJSON(ctx, http.MethodPost, "/v1/topics", cfg, &t)
}

// Topics lists every topic.
func (c *Client) Topics(ctx context.Context) ([]events.TopicInfo, error) {
	var out struct {
		Topics []events.TopicInfo `json:"topics"`
	}
	return out.Topics, c.doJSON(ctx, http.MethodGet, "/v1/topics", nil, &out)
}

// DeleteTopic deletes a topic and its messages.
func (c *Client) DeleteTopic(ctx context.Context, topic string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/topics/"+url.PathEscape(topic), nil, nil)
}

// Events describes schedules, topics and async backlogs.
func (c *Client) Events(ctx context.Context) (*events.Overview, error) {
	var o events.Overview
	return &o, c.doJSON(ctx, http.MethodGet, "/v1/events", nil, &o)
}

// SendCloudEvent posts one CloudEvent in structured mode.
func (c *Client) SendCloudEvent(ctx context.Context, event []byte) ([]events.Delivery, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/events", strings.NewReader(string(event)), "application/cloudevents+json")
	if err != nil {
		return nil, err
	}
	var out struct {
		Events []events.Delivery `json:"events"`
	}
	return out.Events, decode(resp, &out)
}

// DeadLetters lists a function's dead letters, oldest first.
func (c *Client) DeadLetters(ctx context.Context, fn string, limit int) ([]events.DeadLetter, error) {
	var out struct {
		DeadLetters []events.DeadLetter `json:"deadLetters"`
	}
	path := fmt.Sprintf("/v1/functions/%s/dlq?limit=%d", url.PathEscape(fn), limit)
	return out.DeadLetters, c.doJSON(ctx, http.MethodGet, path, nil, &out)
}

// Replay sends dead letters back (none named: all of them).
func (c *Client) Replay(ctx context.Context, fn string, ids []uint64) ([]uint64, error) {
	var out struct {
		Replayed []uint64 `json:"replayed"`
	}
	req := struct {
		IDs []uint64 `json:"ids"`
	}{ids}
	return out.Replayed, c.doJSON(ctx, http.MethodPost, "/v1/functions/"+url.PathEscape(fn)+"/dlq/replay", req, &out)
}

// UsageQuery selects usage (see GET /v1/usage).
type UsageQuery struct {
	Since, Until string // a duration back from now ("24h") or an RFC 3339 time
	By           string // function, day or hour
	Function     string
}

func (q UsageQuery) values(format string) url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"since": q.Since, "until": q.Until, "by": q.By, "function": q.Function, "format": format} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// Usage returns usage and cost.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*metering.Report, error) {
	var r metering.Report
	return &r, c.doJSON(ctx, http.MethodGet, "/v1/usage?"+q.values("").Encode(), nil, &r)
}

// UsageCSV returns usage and cost as CSV.
func (c *Client) UsageCSV(ctx context.Context, q UsageQuery) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/usage?"+q.values("csv").Encode(), nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, readError(resp)
	}
	return io.ReadAll(resp.Body)
}

package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ternhq/tern/internal/api"
	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/auth"
)

// CreateKey makes an API key. The answer's Secret is the key: the server
// shows it this once.
func (c *Client) CreateKey(ctx context.Context, req api.KeyRequest) (*api.KeyCreated, error) {
	var k api.KeyCreated
	return &k, c.doJSON(ctx, http.MethodPost, "/v1/keys", req, &k)
}

// Keys lists every key's record (never the keys themselves).
func (c *Client) Keys(ctx context.Context) ([]auth.Key, error) {
	var out struct {
		Keys []auth.Key `json:"keys"`
	}
	return out.Keys, c.doJSON(ctx, http.MethodGet, "/v1/keys", nil, &out)
}

// RevokeKey deletes a key: it stops working at once.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, nil)
}

// AuditQuery selects audit entries (see GET /v1/audit).
type AuditQuery struct {
	Since    string // a duration back from now ("24h", "7d") or an RFC 3339 time
	Function string
	Limit    int
}

// Audit returns the audit entries q selects, oldest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]audit.Entry, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Function != "" {
		v.Set("function", q.Function)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out struct {
		Entries []audit.Entry `json:"entries"`
	}
	return out.Entries, c.doJSON(ctx, http.MethodGet, "/v1/audit?"+v.Encode(), nil, &out)
}

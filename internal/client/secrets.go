package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/ternhq/tern/internal/secrets"
)

func secretsPath(fn string) string { return "/v1/functions/" + url.PathEscape(fn) + "/secrets" }

// SetSecret stores a function's secret name with value; new instances of
// the function get it as an environment variable.
func (c *Client) SetSecret(ctx context.Context, fn, name, value string) error {
	resp, err := c.do(ctx, http.MethodPut, secretsPath(fn)+"/"+url.PathEscape(name), strings.NewReader(value), "application/octet-stream")
	if err != nil {
		return err
	}
	return decode(resp, nil)
}

// Secrets lists a function's secrets by name; values are never sent.
func (c *Client) Secrets(ctx context.Context, fn string) ([]secrets.SecretInfo, error) {
	var out struct {
		Secrets []secrets.SecretInfo `json:"secrets"`
	}
	return out.Secrets, c.doJSON(ctx, http.MethodGet, secretsPath(fn), nil, &out)
}

// DeleteSecret removes a function's secret.
func (c *Client) DeleteSecret(ctx context.Context, fn, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, secretsPath(fn)+"/"+url.PathEscape(name), nil, "")
	if err != nil {
		return err
	}
	return decode(resp, nil)
}

package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/secrets"
)

// Secrets is what the API needs of the secrets store. No route ever
// answers a value.
type Secrets interface {
	Set(ctx context.Context, fn, name, value string) error
	Delete(ctx context.Context, fn, name string) error
	Names(ctx context.Context, fn string) ([]secrets.SecretInfo, error)
	DeleteAll(ctx context.Context, fn string) error
}

var _ Secrets = (*secrets.Store)(nil)

// secretRoutes serves a function's secrets (the function must exist):
//
//	PUT    /v1/functions/{name}/secrets/{secret}   body is the value (at most 4 KB); 204
//	GET    /v1/functions/{name}/secrets            {"secrets": [{"name", "updated"}]}, names only
//	DELETE /v1/functions/{name}/secrets/{secret}   204, 404 if there is none
func (a *API) secretRoutes(route func(string, handler)) {
	route("PUT /v1/functions/{name}/secrets/{secret}", a.setSecret)
	route("GET /v1/functions/{name}/secrets", a.listSecrets)
	route("DELETE /v1/functions/{name}/secrets/{secret}", a.deleteSecret)
}

// secretsFor checks that secrets are served and that the function exists.
func (a *API) secretsFor(name string) (Secrets, error) {
	if a.secrets == nil {
		return nil, apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "this server keeps no secrets")
	}
	if _, _, err := a.reg.Get(name); err != nil {
		return nil, err
	}
	return a.secrets, nil
}

func (a *API) setSecret(w http.ResponseWriter, r *http.Request) error {
	fn, name := r.PathValue("name"), r.PathValue("secret")
	s, err := a.secretsFor(fn)
	if err != nil {
		return err
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, secrets.MaxValueBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge,
				fmt.Sprintf("a secret's value may take at most %d bytes", secrets.MaxValueBytes))
		}
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading the value: "+err.Error())
	}
	if err := s.Set(r.Context(), fn, name, string(value)); err != nil {
		return secretError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listSecrets(w http.ResponseWriter, r *http.Request) error {
	fn := r.PathValue("name")
	s, err := a.secretsFor(fn)
	if err != nil {
		return err
	}
	names, err := s.Names(r.Context(), fn)
	if err != nil {
		return secretError(err)
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Secrets []secrets.SecretInfo `json:"secrets"`
	}{names})
	return nil
}

func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request) error {
	fn, name := r.PathValue("name"), r.PathValue("secret")
	s, err := a.secretsFor(fn)
	if err != nil {
		return err
	}
	if err := s.Delete(r.Context(), fn, name); err != nil {
		return secretError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// forgetSecrets deletes the secrets of a function about to be deleted, so
// that a function created later under its name does not inherit them. The
// remove handler calls it before the registry's Delete: should it fail,
// the function is still there and the delete can be tried again (a name
// with no function just has nothing to delete). Like the registry's Delete
// it runs to the end whatever happens to the caller's request.
func (a *API) forgetSecrets(ctx context.Context, fn string) error {
	if a.secrets == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := a.secrets.DeleteAll(ctx, fn)
	if err != nil && !errors.Is(err, secrets.ErrInvalid) { // an impossible name has none
		return fmt.Errorf("deleting the secrets of %s: %w", fn, err)
	}
	return nil
}

// secretError gives the store's errors their status. The store's errors
// never carry a value.
func secretError(err error) error {
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, err.Error())
	case errors.Is(err, secrets.ErrTooLarge):
		return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, err.Error())
	case errors.Is(err, secrets.ErrInvalid):
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, err.Error())
	}
	return err
}

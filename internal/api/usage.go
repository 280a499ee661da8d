package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/metering"
)

// Usage is what the API needs of the usage aggregator.
type Usage interface {
	Sync(ctx context.Context) error
	Query(q metering.Query) (*metering.Report, error)
}

var _ Usage = (*metering.Aggregator)(nil)

// usage answers GET /v1/usage?since=24h&until=...&by=function|day|hour&function=NAME&format=json|csv.
func (a *API) usage(w http.ResponseWriter, r *http.Request) error {
	if a.deps.Usage == nil {
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, "metering is off on this server (tern serve --metering=false)")
	}
	q := r.URL.Query()
	now := time.Now()
	query := metering.Query{By: q.Get("by"), Function: q.Get("function"), Prices: a.cfg.Prices}
	since := q.Get("since")
	if since == "" {
		since = "24h"
	}
	var err error
	if query.Since, err = parseSince(since, now); err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "since: "+err.Error())
	}
	if u := q.Get("until"); u != "" {
		if query.Until, err = parseSince(u, now); err != nil {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "until: "+err.Error())
		}
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "format: want json or csv")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.deps.Usage.Sync(ctx); err != nil {
		return err
	}
	rep, err := a.deps.Usage.Query(query)
	if errors.Is(err, metering.ErrBadQuery) {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, err.Error())
	}
	if err != nil {
		return err
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		return metering.WriteCSV(w, rep)
	}
	apierror.WriteJSON(w, http.StatusOK, rep)
	return nil
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/auth"
	"github.com/ternhq/tern/internal/registry"
)

// auditNote is what a handler may add to its change's audit record.
type auditNote struct {
	target, detail string
}

type auditNoteKey struct{}

// noteTarget sets the audit record's target (and detail) of a change
// whose target the route's path does not name.
func noteTarget(r *http.Request, target string, detail ...string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.target = target
		n.detail = strings.Join(detail, " ")
	}
}

// maxCapture bounds how much of an answer is kept to read the changed
// function's name and version from.
const maxCapture = 64 << 10

// auditRecorder notes the status a handler answered with and, when
// capturing, the start of its body.
type auditRecorder struct {
	http.ResponseWriter
	status  int
	capture bool
	body    []byte
}

func (w *auditRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.capture && len(w.body) < maxCapture {
		w.body = append(w.body, b[:min(len(b), maxCapture-len(w.body))]...)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *auditRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// record stores the audit entry of one change; err is what the handler
// (or the permission check) returned.
func (x *Access) record(r *http.Request, p auth.Principal, rule routeRule, rec *auditRecorder, note *auditNote, err error) {
	if x.Audit == nil {
		return
	}
	e := audit.Entry{
		Principal: p.ID, Role: string(p.Role), Action: rule.action, Remote: r.RemoteAddr,
		Target: note.target, Detail: note.detail, Outcome: audit.OutcomeOK,
	}
	switch {
	case err != nil:
		_, e.Outcome = apierror.Classify(err)
	case rec.status >= 300:
		e.Outcome = "http_" + strconv.Itoa(rec.status)
	}
	// What the answer says: a function view (deploy, rollback), an alias,
	// a topic, replayed letters.
	var ans struct {
		Name     string           `json:"name"`
		Version  int              `json:"version"`
		Routes   []registry.Route `json:"routes"`
		Replayed []uint64         `json:"replayed"`
	}
	if err == nil && rec.status < 300 && len(rec.body) > 0 {
		_ = json.Unmarshal(rec.body, &ans)
	}
	if rule.scope == scopeName {
		e.Function, _, _ = strings.Cut(r.PathValue("name"), "@")
	}
	switch rule.action {
	case audit.ActionDeploy:
		e.Function = ans.Name
		if e.Function == "" {
			e.Function = auth.DeployedFunction(r.Context())
		}
		e.Version = ans.Version
	case audit.ActionRollback:
		e.Version = ans.Version
	case audit.ActionAliasSet:
		if len(ans.Routes) == 1 {
			e.Version = ans.Routes[0].Version
		}
		var parts []string
		for _, rt := range ans.Routes {
			parts = append(parts, fmt.Sprintf("%d=%d%%", rt.Version, rt.Weight))
		}
		e.Detail = strings.Join(parts, ",")
	case audit.ActionTopicCreate:
		e.Target = ans.Name
	case audit.ActionDLQReplay:
		if e.Outcome == audit.OutcomeOK {
			e.Detail = fmt.Sprintf("%d dead letters", len(ans.Replayed))
		}
	}
	switch {
	case e.Target != "":
	case rule.target == "alias":
		e.Target = e.Function + "@" + r.PathValue("alias")
	case rule.target != "":
		e.Target = r.PathValue(rule.target)
	default:
		e.Target = e.Function
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := x.Audit.Record(ctx, e); err != nil && x.Log != nil {
		x.Log.Error("api: audit record lost", "action", e.Action, "target", e.Target, "principal", e.Principal, "outcome", e.Outcome, "err", err)
	}
}

// readAudit answers GET /v1/audit?since=24h&function=NAME&limit=N.
func (x *Access) readAudit(w http.ResponseWriter, r *http.Request) error {
	if x.Audit == nil {
		return apierror.New(http.StatusNotFound, apierror.CodeNotFound, "the audit stream is off on this server")
	}
	v := r.URL.Query()
	q := audit.Query{Function: v.Get("function")}
	since := v.Get("since")
	if since == "" {
		since = "24h"
	}
	t, err := parseSinceDays(since, time.Now())
	if err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "since: "+err.Error())
	}
	q.Since = t
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "limit: want a positive number")
		}
		q.Limit = n
	}
	es, err := x.Audit.Read(r.Context(), q)
	if errors.Is(err, audit.ErrBadQuery) {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, err.Error())
	}
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Entries []audit.Entry `json:"entries"`
	}{es})
	return nil
}

// parseSinceDays is parseSince that also takes days ("7d", "1d12h").
func parseSinceDays(s string, now time.Time) (time.Time, error) {
	if strings.Contains(s, "d") && !strings.Contains(s, "T") {
		d, err := auth.ParseDuration(s)
		if err != nil {
			return time.Time{}, err
		}
		if d < 0 {
			return time.Time{}, errors.New("duration must not be negative")
		}
		return now.Add(-d), nil
	}
	return parseSince(s, now)
}

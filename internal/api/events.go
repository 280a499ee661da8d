package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/cloudevents"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/gateway"
)

// Events is what the API needs of the event service.
type Events interface {
	Submit(ctx context.Context, ev events.Event) (*events.Accepted, error)
	Ingest(ctx context.Context, evs []*cloudevents.Event) ([]events.Delivery, error)
	CreateTopic(ctx context.Context, cfg events.TopicConfig) (*events.TopicInfo, error)
	Topics(ctx context.Context) ([]events.TopicInfo, error)
	Topic(ctx context.Context, name string) (*events.TopicInfo, error)
	DeleteTopic(ctx context.Context, name string) error
	Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (*events.Published, error)
	DeadLetters(ctx context.Context, fn string, limit int) ([]events.DeadLetter, error)
	Replay(ctx context.Context, fn string, ids []uint64) ([]uint64, error)
	Overview(ctx context.Context) (*events.Overview, error)
	MaxEventBytes() int64
}

var _ Events = (*events.Service)(nil)

func (a *API) eventRoutes(route func(string, handler)) {
	route("POST /v1/events", a.ingest)
	route("GET /v1/events", a.overview)
	route("GET /v1/topics", a.topics)
	route("POST /v1/topics", a.createTopic)
	route("GET /v1/topics/{topic}", a.topic)
	route("DELETE /v1/topics/{topic}", a.deleteTopic)
	route("POST /v1/topics/{topic}/messages", a.publish)
	route("GET /v1/functions/{name}/dlq", a.deadLetters)
	route("POST /v1/functions/{name}/dlq/replay", a.replay)
}

// isAsync tells an Event invocation (Lambda's InvocationType) from a
// synchronous one.
func isAsync(r *http.Request) (bool, error) {
	t := r.Header.Get("X-Tern-Invocation-Type")
	if t == "" {
		t = r.Header.Get("X-Amz-Invocation-Type")
	}
	switch t {
	case "", "RequestResponse":
		return false, nil
	case "Event":
		return true, nil
	}
	return false, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
		fmt.Sprintf("invocation type %q: want RequestResponse or Event", t))
}

// invokeAsync stores the event and answers 202 with its request id.
func (a *API) invokeAsync(w http.ResponseWriter, r *http.Request, name string, payload []byte) error {
	key := r.Header.Get("X-Tern-Idempotency-Key")
	if key == "" {
		key = r.Header.Get("Idempotency-Key")
	}
	acc, err := a.events.Submit(r.Context(), events.Event{
		Function: name, Payload: payload, IdempotencyKey: key, TraceID: gateway.TraceHeader(r), Source: events.SourceAPI,
	})
	if err != nil {
		return err
	}
	w.Header().Set("X-Tern-Request-Id", acc.RequestID)
	apierror.WriteJSON(w, http.StatusAccepted, acc)
	return nil
}

func (a *API) ingest(w http.ResponseWriter, r *http.Request) error {
	evs, err := cloudevents.Read(r, a.events.MaxEventBytes())
	if err != nil {
		var ce *cloudevents.Error
		if errors.As(err, &ce) {
			code := apierror.CodeBadRequest
			if ce.Status == http.StatusRequestEntityTooLarge {
				code = apierror.CodePayloadTooLarge
			}
			return apierror.New(ce.Status, code, ce.Message)
		}
		return err
	}
	ds, err := a.events.Ingest(r.Context(), evs)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusAccepted, struct {
		Events []events.Delivery `json:"events"`
	}{ds})
	return nil
}

func (a *API) overview(w http.ResponseWriter, r *http.Request) error {
	o, err := a.events.Overview(r.Context())
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (a *API) topics(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.events.Topics(r.Context())
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Topics []events.TopicInfo `json:"topics"`
	}{ts})
	return nil
}

func (a *API) createTopic(w http.ResponseWriter, r *http.Request) error {
	var cfg events.TopicConfig
	if err := decodeJSON(w, r, &cfg); err != nil {
		return err
	}
	t, err := a.events.CreateTopic(r.Context(), cfg)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusCreated, t)
	return nil
}

func (a *API) topic(w http.ResponseWriter, r *http.Request) error {
	t, err := a.events.Topic(r.Context(), r.PathValue("topic"))
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, t)
	return nil
}

func (a *API) deleteTopic(w http.ResponseWriter, r *http.Request) error {
	if err := a.events.DeleteTopic(r.Context(), r.PathValue("topic")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// publish stores the body as one message; X-Tern-Attr-<name> headers
// become its attributes.
func (a *API) publish(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.events.MaxEventBytes()))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading the message: "+err.Error())
	}
	attrs := map[string]string{}
	for k, vs := range r.Header {
		if name, ok := strings.CutPrefix(k, "X-Tern-Attr-"); ok && len(vs) > 0 {
			attrs[name] = vs[0]
		}
	}
	p, err := a.events.Publish(r.Context(), r.PathValue("topic"), body, attrs)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusAccepted, p)
	return nil
}

func (a *API) deadLetters(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, _, err := a.reg.Get(name); err != nil {
		return err
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "limit: want a number from 1 to 10000")
		}
		limit = n
	}
	ls, err := a.events.DeadLetters(r.Context(), name, limit)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		DeadLetters []events.DeadLetter `json:"deadLetters"`
	}{ls})
	return nil
}

func (a *API) replay(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		IDs []uint64 `json:"ids"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	sent, err := a.events.Replay(r.Context(), r.PathValue("name"), req.IDs)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Replayed []uint64 `json:"replayed"`
	}{sent})
	return nil
}

// decodeJSON reads a small JSON request body strictly.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "request body: "+err.Error())
	}
	return nil
}

package redisadapterprom_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	redisadapterprom "github.com/blogstack/redisadapter/prometheus"
)

// TestEveryFieldIsExported holds the table to the Stats types: a field
// without a metric, or of a type the collector cannot export, fails here.
func TestEveryFieldIsExported(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[redisadapter.Stats](), reflect.TypeFor[redisadapter.EmitterStats]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			require.Truef(t, redisadapterprom.HasMetric(f.Name), "%s.%s has no metric in metrics.go", typ.Name(), f.Name)
			switch f.Type.Kind() {
			case reflect.Uint64, reflect.Int, reflect.Int64, reflect.Bool:
			default:
				t.Errorf("%s.%s: a %s is neither a counter (uint64) nor a gauge (int, int64, time.Duration, bool)", typ.Name(), f.Name, f.Type)
			}
		}
	}
}

// TestScrape registers the collectors of a real adapter and a real Emitter
// on one registry, on a real Redis, and reads them back as Prometheus does:
// the text exposition over HTTP, and the registry's gathered values.
func TestScrape(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redisadapter.Standalone{Addr: srv.Addr()}

	server := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	a, err := redisadapter.New(ctx, server, c, nil)
	require.NoError(t, err)
	defer a.Close(ctx)
	e, err := redisadapter.NewEmitter(ctx, c, nil)
	require.NoError(t, err)
	defer e.Close(ctx)

	reg := prometheus.NewRegistry()
	reg.MustRegister(redisadapterprom.New(a), redisadapterprom.NewEmitter(e))

	require.NoError(t, a.Of("/").Emit(ctx, "m", 1))
	require.NoError(t, e.Emit(ctx, "m", 2))
	_, err = e.FetchSockets(ctx) // the Emitter subscribes to its answers
	require.NoError(t, err)
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, e.Flush(ctx))

	// Names and help pass Prometheus's linter.
	for _, c := range []prometheus.Collector{redisadapterprom.New(a), redisadapterprom.NewEmitter(e)} {
		problems, err := testutil.CollectAndLint(c)
		require.NoError(t, err)
		require.Empty(t, problems)
	}

	// Values that do not depend on timing.
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP redisadapter_subscribed 1 while every subscription of this node is live, else 0. Alert when 0 for more than a few seconds: the node hears nothing from the fleet.
# TYPE redisadapter_subscribed gauge
redisadapter_subscribed 1
# HELP redisadapter_sockets Sockets of this node the adapter tracks now. Alert when far from the node's connection count: sockets tracked that are not connected.
# TYPE redisadapter_sockets gauge
redisadapter_sockets 0
# HELP redisadapter_subscriptions Subscriptions held now, by kind (channel, pattern, shard_channel, stream). Alert when one falls to 0 while redisadapter_subscribed is 1 for long (nothing to hear), or grows without bound (room channels of rooms never left).
# TYPE redisadapter_subscriptions gauge
redisadapter_subscriptions{kind="channel"} 3
redisadapter_subscriptions{kind="pattern"} 1
redisadapter_subscriptions{kind="shard_channel"} 0
redisadapter_subscriptions{kind="stream"} 0
# HELP redisadapter_emitter_subscriptions Subscriptions held now, by kind (channel, pattern, shard_channel, stream). Alert when one falls to 0 while redisadapter_subscribed is 1 for long (nothing to hear), or grows without bound (room channels of rooms never left).
# TYPE redisadapter_emitter_subscriptions gauge
redisadapter_emitter_subscriptions{kind="channel"} 2
redisadapter_emitter_subscriptions{kind="shard_channel"} 0
`), "redisadapter_subscribed", "redisadapter_sockets", "redisadapter_subscriptions", "redisadapter_emitter_subscriptions"))

	// Every field, as Prometheus scrapes it.
	h := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer h.Close()
	resp, err := http.Get(h.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	text := string(body)
	for _, line := range []string{
		"# TYPE redisadapter_published_total counter",
		"# TYPE redisadapter_queue_depth gauge",
		`redisadapter_connections{kind="room_channels"} 0`,
		`redisadapter_connections{kind="sentinel"} 0`,
		"redisadapter_publish_failures_total 0",
		"redisadapter_emitter_publish_failures_total 0",
		"# TYPE redisadapter_emitter_published_total counter",
	} {
		require.Contains(t, text, line+"\n")
	}
	require.NotContains(t, text, "redisadapter_emitter_sockets", "an Emitter has no sockets")

	got := map[string]float64{}
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	require.GreaterOrEqual(t, got["redisadapter_published_total"], 1.0)
	require.GreaterOrEqual(t, got["redisadapter_emitter_published_total"], 2.0) // the broadcast and the request
	require.GreaterOrEqual(t, got["redisadapter_received_total"], 1.0)
	require.GreaterOrEqual(t, got["redisadapter_connections{kind=pipelined}"], 1.0)
	require.GreaterOrEqual(t, got["redisadapter_emitter_connections{kind=pipelined}"], 1.0)
}

// TestOptions: namespace, subsystem and constant labels, as redisprometheus
// takes them.
func TestOptions(t *testing.T) {
	c := redisadapterprom.New(nil, redisadapterprom.WithNamespace("chat"), redisadapterprom.WithSubsystem("redis"),
		redisadapterprom.WithConstLabels(prometheus.Labels{"adapter": "rooms"}))
	ch := make(chan *prometheus.Desc, 100)
	c.Describe(ch)
	close(ch)
	d := (<-ch).String()
	require.Contains(t, d, `fqName: "chat_redis_published_total"`)
	require.Contains(t, d, `adapter="rooms"`)
}

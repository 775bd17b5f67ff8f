package redisadapterprom_test

import (
	"context"
	"log"
	"net/http"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blogstack/redisadapter"
	redisadapterprom "github.com/blogstack/redisadapter/prometheus"
)

// A node registers its adapter's collector; the metrics are read from
// Stats at each scrape.
func Example() {
	ctx := context.Background()
	server := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	a, err := redisadapter.New(ctx, server, redisadapter.Standalone{Addr: "127.0.0.1:6379"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	prometheus.MustRegister(redisadapterprom.New(a)) // redisadapter_published_total, redisadapter_connections{kind="pipelined"}, ...
	http.Handle("/metrics", promhttp.Handler())
}

// A job worker's Emitter, with a label that tells it from the others.
func ExampleNewEmitter() {
	e, err := redisadapter.NewEmitter(context.Background(), redisadapter.Standalone{Addr: "127.0.0.1:6379"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	prometheus.MustRegister(redisadapterprom.NewEmitter(e, redisadapterprom.WithConstLabels(prometheus.Labels{"job": "digest"})))
}

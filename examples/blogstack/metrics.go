package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blogstack/redisadapter"
	redisadapterprom "github.com/blogstack/redisadapter/prometheus"
)

// metricsHandler exports the adapter's Stats (redisadapter_*, through the
// collector module) and the client limits' counters, read at each scrape,
// with the Go runtime's, in Prometheus text format.
func metricsHandler(a *redisadapter.Adapter, limits *readerLimits) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(redisadapterprom.New(a))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "blogstack", Name: "clients_rejected_total",
		Help: "Clients disconnected for a message over -max-message-size or too many attachments."},
		func() float64 { return float64(limits.rejected.Load()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "blogstack", Name: "events_limited_total",
		Help: "Events answered with an error ack for -event-rate or -max-posts."},
		func() float64 { return float64(limits.limited.Load()) }))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

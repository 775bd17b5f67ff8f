package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blogstack/redisadapter"
)

// metricsHandler exports the adapter's counters and the client limits',
// read at each scrape, with the Go runtime's, in Prometheus text format.
func metricsHandler(a *redisadapter.Adapter, limits *readerLimits) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, v func(redisadapter.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "redisadapter", Name: name, Help: help},
			func() float64 { return float64(v(a.Stats())) }))
	}
	counter("published_total", "Messages this node published to Redis.", func(s redisadapter.Stats) uint64 { return s.Published })
	counter("publish_failures_total", "Queued messages Redis did not take.", func(s redisadapter.Stats) uint64 { return s.PublishFailures })
	counter("received_total", "Messages this node read from Redis.", func(s redisadapter.Stats) uint64 { return s.Received })
	counter("malformed_total", "Received messages dropped as undecodable, oversized or of unknown type.", func(s redisadapter.Stats) uint64 { return s.Malformed })
	counter("queue_full_total", "Received messages dropped because a receive queue was full.", func(s redisadapter.Stats) uint64 { return s.QueueFull })
	counter("slow_socket_drops_total", "Events not delivered to a local socket whose queue was full.", func(s redisadapter.Stats) uint64 { return s.SlowSocketDrops })
	counter("request_timeouts_total", "Requests to other nodes that ended before every node answered.", func(s redisadapter.Stats) uint64 { return s.RequestTimeouts })
	counter("resubscribes_total", "Subscriptions renewed after a dropped connection or a failover.", func(s redisadapter.Stats) uint64 { return s.Resubscribes })
	counter("stream_gaps_total", "Times this node found stream entries trimmed before it read them (streams mode): broadcasts lost.", func(s redisadapter.Stats) uint64 { return s.StreamGaps })
	counter("resent_total", "Stream entries sent again after a try that may not have reached Redis (streams mode).", func(s redisadapter.Stats) uint64 { return s.Resent })
	counter("stream_duplicates_total", "Second copies of stream entries a resend left, dropped (streams mode).", func(s redisadapter.Stats) uint64 { return s.StreamDuplicates })
	counter("id_collisions_total", "Socket ids seen on two nodes, or not made by SessionIDGenerator.", func(s redisadapter.Stats) uint64 { return s.IDCollisions })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "redisadapter", Name: "queue_depth", Help: "Received messages waiting to be handled."},
		func() float64 { return float64(a.Stats().QueueDepth) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "redisadapter", Name: "sockets", Help: "Sockets of this node the adapter tracks."},
		func() float64 { return float64(a.Stats().Sockets) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "redisadapter", Name: "subscribed", Help: "1 while every subscription of this node is live, else 0."},
		func() float64 {
			if a.Stats().Subscribed {
				return 1
			}
			return 0
		}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "blogstack", Name: "clients_rejected_total",
		Help: "Clients disconnected for a message over -max-message-size or too many attachments."},
		func() float64 { return float64(limits.rejected.Load()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "blogstack", Name: "events_limited_total",
		Help: "Events answered with an error ack for -event-rate or -max-posts."},
		func() float64 { return float64(limits.limited.Load()) }))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

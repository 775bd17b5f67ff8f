package redisadapter

// What the package's external tests (package redisadapter_test) reach
// inside it; compiled only with the tests.

import (
	"context"
	"net"
)

// ClusterDialingVia returns c dialing route(addr) wherever it would dial a
// node at addr: the fault matrix routes a node's dials of each cluster
// node to a fault proxy of its own (faults_test.go).
func ClusterDialingVia(c Cluster, route func(addr string) string) Cluster {
	c.dial = dialingVia(route)
	return c
}

// SentinelDialingVia returns c dialing route(addr) wherever it would dial a
// server (a sentinel or a data node) at addr.
func SentinelDialingVia(c Sentinel, route func(addr string) string) Sentinel {
	c.dial = dialingVia(route)
	return c
}

func dialingVia(route func(addr string) string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, route(addr))
	}
}

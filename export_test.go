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
	var d net.Dialer
	c.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, route(addr))
	}
	return c
}

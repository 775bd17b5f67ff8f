package main

import (
	"fmt"
	"strings"
)

// The example's path: BenchmarkExamplePath, the example's own server
// processes against Node's, with socket.io-client 2.5.0 clients.

// examplePathSystems are BenchmarkExamplePath's cases.
var examplePathSystems = []struct{ key, label string }{
	{"blogstack", "examples/blogstack (redisadapter)"},
	{"node-redis-adapter", "Node socket.io 4 + @socket.io/redis-adapter"},
}

// examplePathTable is the section of BenchmarkExamplePath's results, or ""
// when the run has none.
func examplePathTable(get func(string, string) (float64, bool)) string {
	var b strings.Builder
	for _, s := range examplePathSystems {
		name := "ExamplePath/" + s.key
		v, ok := get(name, "comments/s")
		if !ok {
			continue
		}
		lost, _ := get(name, "%lost")
		servers, _ := get(name, "servers-cpu-ms/1k")
		machine, _ := get(name, "cpu-ms/1k")
		fmt.Fprintf(&b, "| %s | %.0f | %.2f%% | %.1f | %.1f |\n", s.label, v, lost, servers, machine)
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n## The example's path, as deployed: server processes and Node.js clients\n\n" +
		"Two `examples/blogstack` server processes on one Redis, started with `-event-rate 0` (the example lets a\n" +
		"connection send 50 events per second by default; this client floods); a socket.io-client 2.5.0 client\n" +
		"(Node.js) on node A sends comments with at most 64 unacknowledged, one on node B joined to the post receives.\n" +
		"Node's row: two socket.io 4 + @socket.io/redis-adapter 8 servers running the same handler. *Servers' CPU*:\n" +
		"user and system time of the two server processes per 1,000 comments delivered, the comparison that counts:\n" +
		"the rate is bound by the machine's two cores, which the servers share with the Node.js clients and Redis\n" +
		"(and on a shared machine with its other work); *machine CPU*: every process on the machine.\n\n" +
		"| system | comments/s | lost | servers' cpu-ms / 1k comments | machine cpu-ms / 1k comments |\n|---|---|---|---|---|\n" +
		b.String()
}

// examplePathTarget is the Targets row of the example's path, or "" when
// the run has none.
func examplePathTarget(get func(string, string) (float64, bool)) string {
	ours, ok := get("ExamplePath/blogstack", "servers-cpu-ms/1k")
	node, nodeOK := get("ExamplePath/node-redis-adapter", "servers-cpu-ms/1k")
	if !ok || !nodeOK || node == 0 {
		return ""
	}
	return fmt.Sprintf("| the example's servers' CPU per comment at most half of Node's | %.2f× (%.1f vs %.1f ms per 1k comments) | %s |\n",
		ours/node, ours, node, yes(ours <= node/2))
}

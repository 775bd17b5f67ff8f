package main

import (
	"strings"
	"testing"
)

// The example's path has its table and its target row when the run has
// it, and neither when it has not.
func TestReportExamplePath(t *testing.T) {
	in := `BenchmarkExamplePath/blogstack-2  20000  62058 ns/op  0 %lost  0 ack-errors  16114 comments/s  108.5 cpu-ms/1k  30.00 servers-cpu-ms/1k
BenchmarkExamplePath/node-redis-adapter-2  20000  99712 ns/op  0.5 %lost  0 ack-errors  10029 comments/s  199.0 cpu-ms/1k  62.50 servers-cpu-ms/1k
`
	results, env, err := parse(strings.NewReader(in))
	if err != nil || len(results) != 2 {
		t.Fatalf("parsed %d results: %v", len(results), err)
	}
	md := report(results, medianGetter(results), env, "bench/run", "")
	for _, want := range []string{
		"| examples/blogstack (redisadapter) | 16114 | 0.00% | 30.0 | 108.5 |",
		"| Node socket.io 4 + @socket.io/redis-adapter | 10029 | 0.50% | 62.5 | 199.0 |",
		"| the example's servers' CPU per comment at most half of Node's | 0.48× (30.0 vs 62.5 ms per 1k comments) | yes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	fanout := `BenchmarkFanout/adapter/100B-2   20000  1 ns/op  0 %lost  10.0 cpu-ms/1k  90000 deliveries/s
`
	results, env, _ = parse(strings.NewReader(fanout))
	if md := report(results, medianGetter(results), env, "bench/run", ""); strings.Contains(md, "example's path, as deployed") || strings.Contains(md, "example's servers' CPU") {
		t.Errorf("a run without the example's path reports it:\n%s", md)
	}
}

package main

import (
	"strings"
	"testing"
)

// Two rounds of the same cases: the report gives each number's median
// and lists every case once.
func TestReportTakesMediansOverRounds(t *testing.T) {
	in := `goos: linux
BenchmarkFanout/adapter/100B-2   20000  1 ns/op  0 %lost  10.0 cpu-ms/1k  90000 deliveries/s
BenchmarkFanout/gosocketio-builtin/100B-2   20000  1 ns/op  0 %lost  30.0 cpu-ms/1k  30000 deliveries/s
BenchmarkScaling/1000sockets/1nodes-2  20  1 ns/op  0 %lost  60000 deliveries/s  15 heap-KiB/socket
BenchmarkFanout/adapter/100B-2   20000  1 ns/op  0 %lost  20.0 cpu-ms/1k  50000 deliveries/s
BenchmarkFanout/gosocketio-builtin/100B-2   20000  1 ns/op  0 %lost  30.0 cpu-ms/1k  10000 deliveries/s
BenchmarkScaling/1000sockets/1nodes-2  20  1 ns/op  0 %lost  40000 deliveries/s  15 heap-KiB/socket
BenchmarkRecovery/standalone-2  1  2 ns/op  60 flow-max-ms  55 flow-med-ms  50 flow-min-ms  0 lost  2030 recovered-ms  1200 refused
BenchmarkFanout/adapter/100B-2   20000  1 ns/op  0 %lost  15.0 cpu-ms/1k  70000 deliveries/s
BenchmarkFanout/gosocketio-builtin/100B-2   20000  1 ns/op  0 %lost  30.0 cpu-ms/1k  20000 deliveries/s
BenchmarkFaults/sigstop-3s/streams-2  1  9 ns/op  290 accepted  1210 detect-ms  0 lost  75 recover-ms  0 refused  0 reported
BenchmarkFaults/latency-200ms/classic-2  1  9 ns/op  300 accepted  -1 detect-ms  0 lost  3 recover-ms  0 refused  0 reported
`
	results, env, err := parse(strings.NewReader(in))
	if err != nil || len(results) != 11 {
		t.Fatalf("parsed %d results: %v", len(results), err)
	}
	get := medianGetter(results)
	if v, _ := get("Fanout/adapter/100B", "deliveries/s"); v != 70000 {
		t.Fatalf("median of 90000, 50000, 70000 = %v", v)
	}
	if v, _ := get("Scaling/1000sockets/1nodes", "deliveries/s"); v != 50000 {
		t.Fatalf("median of 60000, 40000 = %v", v)
	}
	md := report(results, get, env, "bench/run", "")
	for _, want := range []string{"3 rounds", "| 1000 | 1 | 50000 |",
		"| standalone Redis down 2 s | 2.03 s | 50 / 55 / 60 ms | 0 | 1200 |",
		"| sigstop-3s | streams | 1210 ms | 75 ms | 290 | 0 | 0 | 0 |", "| latency-200ms | classic | never | 3 ms | 300 | 0 | 0 | 0 |", "| standalone: every post flows again within 100 ms of Redis serving | 60 ms, rounds 60-60 ms | yes |", "| fan-out ≥ 3× go-socket.io built-in (100B) | 3.50× (at 0.50× its CPU per delivery)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "| 1000 | 1 |") != 1 {
		t.Errorf("a case repeated in the report:\n%s", md)
	}
}

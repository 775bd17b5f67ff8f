package redisadapter_test

import "testing"

// BenchmarkFaults runs each case of the fault matrix (faults_test.go) once
// per iteration and reports what it measured:
//   - detect-ms: from the fault's start until a node said so (Ping
//     failing, or Stats.Outages or ProbeFailures rising); -1: never;
//   - recover-ms: from the fault's end (with Sentinel, the election) until
//     broadcasts from each node reach the other's client again; -1: not
//     within 30 s;
//   - accepted, refused: broadcasts Emit returned nil / an error for;
//   - lost: accepted and never received by the other node's client;
//   - reported: Stats.PublishFailures added on both nodes.
//
// Run it alone with
//
//	go test -run '^$' -bench Faults -benchtime 1x .
//
// A case's name is "<fault>/<mode>": -bench 'Faults/.*/sharded' runs one
// mode's cases (a pattern is matched level by level, so 'Faults/.*sharded'
// matches none).
func BenchmarkFaults(b *testing.B) {
	for _, fc := range faultCases {
		for _, mode := range fc.modes {
			b.Run(fc.name+"/"+mode.name, func(b *testing.B) {
				if fc.long && testing.Short() {
					b.Skip("a 15 s fault: runs without -short")
				}
				var rs []faultResult
				for range b.N {
					rs = append(rs, runFault(b, fc, mode))
				}
				pick := func(f func(faultResult) float64) float64 {
					vs := make([]float64, len(rs))
					for i, r := range rs {
						vs[i] = f(r)
					}
					return median(vs)
				}
				b.ReportMetric(pick(func(r faultResult) float64 {
					if r.detected < 0 {
						return -1
					}
					return ms(r.detected)
				}), "detect-ms")
				b.ReportMetric(pick(func(r faultResult) float64 {
					if r.recovered < 0 {
						return -1
					}
					return ms(r.recovered)
				}), "recover-ms")
				b.ReportMetric(pick(func(r faultResult) float64 { return float64(r.accepted) }), "accepted")
				b.ReportMetric(pick(func(r faultResult) float64 { return float64(r.refused) }), "refused")
				b.ReportMetric(pick(func(r faultResult) float64 { return float64(r.lost) }), "lost")
				b.ReportMetric(pick(func(r faultResult) float64 { return float64(r.reported) }), "reported")
			})
		}
	}
}

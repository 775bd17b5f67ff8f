package redisadapter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkRoomModes compares how the three pub/sub modes carry broadcasts
// to single rooms on the shared six-node cluster: 8 adapter nodes, 1,000
// rooms, each node's one socket in an eighth of them (joined with
// Adapter.Join), and an Emitter broadcasting to a random room per op. It
// reports the broadcasts each node read from Redis (reads/node/op), the
// bytes the Redis nodes wrote to their clients per broadcast (the sum of
// INFO stats total_net_output_bytes: redis-out-B/op), the CPU time per
// delivered message of this process (8 nodes, their clients and the
// Emitter: proc-cpu-µs/delivery) and of the whole machine (Redis too:
// machine-cpu-µs/delivery), deliveries per second, the share lost, and
// how long Adapter.Join of a node's 125 rooms took until the node receives
// their broadcasts (join-ms).
//
//	go test -run '^$' -bench RoomModes -benchtime 20000x .
func BenchmarkRoomModes(b *testing.B) {
	set := sharedCluster(b)
	const nodes, rooms = 8, 1000
	for _, m := range []struct {
		name string
		c    redisadapter.Connector
	}{
		{"classic-pattern", redisadapter.Cluster{Addrs: set.Addrs()}},
		{"classic-rooms", redisadapter.Cluster{Addrs: set.Addrs(), RoomSubscriptions: true}},
		{"sharded", redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}},
	} {
		b.Run(m.name, func(b *testing.B) {
			ctx := context.Background()
			opts := &redisadapter.Options{Key: uniqueKey(b)}
			var delivered atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			var fleet []*node
			var joins time.Duration // Adapter.Join of each node's rooms
			for i := range nodes {
				n := startNode(b, m.c, opts)
				defer n.stop()
				fleet = append(fleet, n)
				cl := n.client(b)
				defer cl.Close()
				var mine []string
				for r := i; r < rooms; r += nodes {
					mine = append(mine, "room-"+strconv.Itoa(r))
				}
				conn := socketConn(b, n, cl.ID())
				start := time.Now()
				require.NoError(b, n.a.Join(ctx, conn, mine...))
				joins += time.Since(start)
				countEvents(&wg, cl, &delivered, stop)
			}
			defer func() { close(stop); wg.Wait() }()
			em, err := redisadapter.NewEmitter(ctx, m.c, opts)
			require.NoError(b, err)
			defer em.Close(ctx)
			rng := rand.New(rand.NewPCG(1, 2))
			targets := make([]string, b.N)
			for i := range targets {
				targets[i] = "room-" + strconv.Itoa(rng.IntN(rooms))
			}

			reads0, out0 := reads(fleet), redisOutput(b, set)
			proc0, cpu0 := processCPU(b), machineCPU(b)
			b.ResetTimer()
			for i, room := range targets {
				if err := em.To(room).Emit(ctx, "m", i); err != nil {
					b.Fatal(err)
				}
			}
			reportDeliveries(b, &delivered, int64(b.N), time.Second)
			proc, cpu := processCPU(b)-proc0, machineCPU(b)-cpu0
			// The reads settle before they are counted.
			for last, deadline := uint64(0), time.Now().Add(10*time.Second); time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				if now := reads(fleet); now != last {
					last = now
					continue
				}
				break
			}
			got := float64(max(delivered.Load(), 1))
			b.ReportMetric(float64(reads(fleet)-reads0)/float64(b.N)/nodes, "reads/node/op")
			b.ReportMetric(float64(redisOutput(b, set)-out0)/float64(b.N), "redis-out-B/op")
			b.ReportMetric(float64(proc.Microseconds())/got, "proc-cpu-µs/delivery")
			b.ReportMetric(float64(cpu.Microseconds())/got, "machine-cpu-µs/delivery")
			b.ReportMetric(float64(joins.Microseconds())/1000/nodes, "join-ms")
		})
	}
}

// redisOutput sums INFO stats total_net_output_bytes over the cluster's nodes.
func redisOutput(b *testing.B, set *redistest.ClusterSet) uint64 {
	b.Helper()
	var total uint64
	for _, n := range set.Nodes {
		out, err := n.Exec(context.Background(), "redis-cli", "-p", fmt.Sprint(n.Port), "INFO", "stats")
		require.NoError(b, err)
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "total_net_output_bytes" {
				x, _ := strconv.ParseUint(v, 10, 64)
				total += x
			}
		}
	}
	return total
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

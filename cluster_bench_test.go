package redisadapter_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkClusterModes compares classic and sharded pub/sub on a six-node
// cluster with four adapter nodes, each holding the readers of its own five
// rooms out of twenty: the shape where sharding pays. Per broadcast to one
// room it reports how many pub/sub messages the cluster bus carried between
// Redis nodes (bus-msgs/op) and how many messages the adapter nodes read
// from Redis (reads/op).
//
//	go test -run '^$' -bench ClusterModes -benchtime 5000x .
func BenchmarkClusterModes(b *testing.B) {
	set := sharedCluster(b)
	for _, sharded := range []bool{false, true} {
		b.Run(map[bool]string{false: "classic", true: "sharded"}[sharded], func(b *testing.B) {
			c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: sharded}
			var nodes []*node
			for i := range 4 {
				n := startNode(b, c, nil)
				nodes = append(nodes, n)
				for r := range 5 {
					n.client(b, "r"+strconv.Itoa(i*5+r))
				}
			}
			raw := rawClient(b, c)
			if sharded {
				for r := range 20 {
					waitShard(b, raw, defaultNames.room("/", "r"+strconv.Itoa(r)), 1)
				}
			}
			readsBefore, busBefore := reads(nodes), busMessages(b, set)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if err := nodes[0].a.To("r"+strconv.Itoa(i%20)).Emit(ctx, "m", i); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Wait for the reads to settle before counting them.
			deadline := time.Now().Add(30 * time.Second)
			for last := uint64(0); time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				now := reads(nodes)
				if now == last {
					break
				}
				last = now
			}
			b.ReportMetric(float64(reads(nodes)-readsBefore)/float64(b.N), "reads/op")
			b.ReportMetric(float64(busMessages(b, set)-busBefore)/float64(b.N), "bus-msgs/op")
		})
	}
}

func reads(nodes []*node) uint64 {
	var n uint64
	for _, nd := range nodes {
		n += nd.a.Stats().Received
	}
	return n
}

// busMessages sums the pub/sub messages every node sent on the cluster bus.
func busMessages(b *testing.B, set *redistest.ClusterSet) uint64 {
	b.Helper()
	var total uint64
	for _, n := range set.Nodes {
		out, err := n.Exec(context.Background(), "redis-cli", "-p", fmt.Sprint(n.Port), "CLUSTER", "INFO")
		require.NoError(b, err)
		for _, line := range strings.Split(out, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "cluster_stats_messages_publish_sent" || k == "cluster_stats_messages_publishshard_sent") {
				x, _ := strconv.ParseUint(v, 10, 64)
				total += x
			}
		}
	}
	return total
}

func waitShard(b *testing.B, raw rueidis.Client, ch string, want int64) {
	b.Helper()
	deadline := time.Now().Add(wait)
	for {
		n, err := raw.Do(context.Background(), raw.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
		if err == nil && n[ch] == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d subscribers, want %d", ch, n[ch], want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkShardedRooms measures what room channels cost a sharded node:
// the node's one socket joins 0, 1,000 or 10,000 rooms. Once every room
// channel is subscribed it reports the process's goroutines over those
// before the joins (goroutines-added), and the process's CPU time over an
// idle window (idleWindow) as a percentage of one core (idle-cpu-%;
// rooms=0 is the baseline: the node, a plain cluster client and the
// socket's client), once the node holds the connections a long-running one
// does.
// Each op then joins one fresh room with conn.Join and waits until PUBSUB
// SHARDNUMSUB on the room's master counts the subscription (join-ms: found
// by the polling, which polls fast right after a change), then another
// with Adapter.Join (join-api-ms: until the subscription is confirmed).
//
//	go test -run '^$' -bench ShardedRooms -benchtime 20x .
func BenchmarkShardedRooms(b *testing.B) {
	set := sharedCluster(b)
	for _, rooms := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
			key := fmt.Sprintf("bench-rooms-%d-%d", rooms, time.Now().UnixNano())
			opts := &redisadapter.Options{Key: key}
			// Stopped when this round ends: the benchmark runs the function
			// twice (b.N = 1, then 20), and Cleanup waits for both.
			a := startNode(b, c, opts)
			defer a.stop()
			cl := a.client(b)
			defer cl.Close()
			raw := rawClient(b, c)
			defer raw.Close()
			base := settledGoroutines()
			shardChannels := func() int64 {
				var n int64
				for _, nd := range set.Nodes {
					out, err := nd.Exec(context.Background(), "redis-cli", "-p", fmt.Sprint(nd.Port), "INFO", "stats")
					require.NoError(b, err)
					for _, line := range strings.Split(out, "\n") {
						if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "pubsubshard_channels" {
							x, _ := strconv.ParseInt(v, 10, 64)
							n += x
						}
					}
				}
				return n
			}
			before := shardChannels()
			conn := socketConn(b, a, cl.ID())
			for r := range rooms {
				a.srv.JoinRoom("/", "room-"+strconv.Itoa(r), conn)
			}
			deadline := time.Now().Add(60 * time.Second)
			for shardChannels()-before < int64(rooms) {
				require.True(b, time.Now().Before(deadline), "room channels not subscribed within 60 s")
				time.Sleep(50 * time.Millisecond)
			}
			goroutines := settledGoroutines() - base
			// rueidis dials the replicas at its topology refreshes (every
			// 5 s, up to four nodes each), not in New: in the window their
			// dials would count, and their keepalive PINGs would not.
			await.True(b, time.Minute, 100*time.Millisecond, "the node's client connected to every node", func() bool {
				return a.a.Stats().PipelinedConns >= len(set.Nodes)
			})
			idle := idleCPU(b, idleWindow)

			var total, joinAPI time.Duration
			b.ResetTimer()
			for i := range b.N {
				room := "fresh-" + strconv.Itoa(i)
				ch := key + "#/#" + room + "#"
				start := time.Now()
				a.srv.JoinRoom("/", room, conn)
				for {
					n, err := raw.Do(context.Background(), raw.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
					if err == nil && n[ch] == 1 {
						break
					}
					if time.Since(start) > wait {
						b.Fatalf("%s not subscribed within %v", ch, wait)
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(start)
				// Adapter.Join: returns once the channel is confirmed.
				start = time.Now()
				require.NoError(b, a.a.Join(context.Background(), conn, "joined-"+strconv.Itoa(i)))
				joinAPI += time.Since(start)
			}
			// After the loop: ResetTimer drops metrics reported before it.
			b.ReportMetric(float64(goroutines), "goroutines-added")
			b.ReportMetric(idle, "idle-cpu-%")
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "join-ms")
			b.ReportMetric(float64(joinAPI.Microseconds())/1000/float64(b.N), "join-api-ms")
		})
	}
}

// settledGoroutines is the number of goroutines once it has not changed
// for 300 ms (those of an earlier round wind down), or after 10 s.
func settledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(10 * time.Second); stable < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}

// socketConn is the go-socket.io Conn of socket id on n.
func socketConn(b testing.TB, n *node, id string) socketio.Conn {
	b.Helper()
	var conn socketio.Conn
	deadline := time.Now().Add(wait)
	for conn == nil {
		// Joining inside ForEach would deadlock: take the Conn out first.
		n.srv.ForEach("/", id, func(c socketio.Conn) { conn = c })
		require.True(b, time.Now().Before(deadline), "socket %s not found", id)
		time.Sleep(time.Millisecond)
	}
	return conn
}

// idleWindow is how long BenchmarkShardedRooms measures an idle node's CPU.
// Its second-by-second figure swings several times over (with 10,000
// rooms, a GC cycle of 10 to 15 ms every 15 to 30 s; the delivery probes,
// rueidis's keepalive PINGs and topology refreshes): over 3 s the same node
// read 0.36 to 0.80% at 1,000 rooms from one run to the next, over 10 s
// 0.37 to 0.63%.
const idleWindow = 10 * time.Second

// idleCPU is the CPU time the process used over window, as a percentage of
// one core (getrusage: user + system, microsecond resolution).
func idleCPU(b *testing.B, window time.Duration) float64 {
	b.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, t0 := cpu(), time.Now()
	time.Sleep(window)
	return 100 * float64(cpu()-c0) / float64(time.Since(t0))
}

package redisadapter_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
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
					waitShard(b, raw, "socket.io#/#r"+strconv.Itoa(r)+"#", 1)
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

package redisadapter_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// resumed emits fresh ticks from sender until every client has received
// one emitted in this call, and returns how long after since that took. It
// fails the test when that takes longer than within.
func resumed(t *testing.T, sender *node, clients []*siotest.Client, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	round := fmt.Sprint(time.Now().UnixNano()) // ticks of earlier calls do not count
	got := make([]bool, len(clients))
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = sender.a.To("r").Emit(ctx, "tick", round, i) // fails while Redis is away: that is the point
		cancel()
		for j, c := range clients {
		drain:
			for {
				select {
				case e := <-c.Events:
					if e.Name == "tick" && len(e.Args) > 0 && string(e.Args[0]) == `"`+round+`"` {
						got[j] = true
					}
				default:
					break drain
				}
			}
		}
		if !slices.Contains(got, false) {
			return time.Since(since)
		}
		if time.Since(since) > within {
			t.Fatalf("broadcasts did not resume within %v (clients reached: %v)", within, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	c := redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}
	opts := &redisadapter.Options{RequestTimeout: time.Second}
	a, b := startNodes(t, c, opts)
	clients := []*siotest.Client{a.client(t, "r"), b.client(t, "r")}
	resumed(t, a, clients, time.Now(), wait)

	old, err := set.CurrentMaster(bg(t))
	require.NoError(t, err)
	require.Equal(t, set.Master.Addr(), old)
	killed := time.Now()
	set.Master.Stop(t)

	// During the outage requests fail within their timeout, naming the cause.
	start := time.Now()
	_, err = a.a.AllRooms(context.Background(), "/")
	require.Error(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	t.Logf("request during the outage: %v", err)

	var elected time.Time
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, err := set.CurrentMaster(bg(t)); err == nil && m != old {
			elected = time.Now()
			require.Equal(t, set.Replica.Addr(), m)
			break
		}
		require.True(t, time.Now().Before(deadline), "no new master elected")
		time.Sleep(20 * time.Millisecond)
	}
	d := resumed(t, a, clients, elected, 3*time.Second)
	t.Logf("master killed; new master elected after %v; broadcasts resumed %v after the election", elected.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))
	eventually(t, "both nodes counted on the new master", func() bool {
		n, err := a.a.ServerCount(bg(t))
		return err == nil && n == 2
	})
}

func TestClusterFailover(t *testing.T) {
	set := redistest.StartCluster(t)
	c := redisadapter.Cluster{Addrs: set.Addrs()}
	opts := &redisadapter.Options{RequestTimeout: time.Second}

	// Start nodes until some subscription sits on a master: killing that
	// master is the case to survive.
	var masters []*redistest.Server
	for _, n := range set.Nodes {
		if role, err := n.Role(bg(t)); err == nil && role == "master" {
			masters = append(masters, n)
		}
	}
	require.Len(t, masters, 3)
	var nodes []*node
	var clients []*siotest.Client
	var victim *redistest.Server
	for victim == nil {
		require.Less(t, len(nodes), 12, "no adapter subscribed on a master")
		n := startNode(t, c, opts)
		nodes = append(nodes, n)
		clients = append(clients, n.client(t, "r"))
		for _, m := range masters {
			if subscribers(t, m) > 0 {
				victim = m
				break
			}
		}
	}
	resumed(t, nodes[0], clients, time.Now(), wait)

	killed := time.Now()
	victim.Stop(t)
	var promoted time.Time
	deadline := time.Now().Add(30 * time.Second)
	for promoted.IsZero() {
		for _, n := range set.Nodes {
			if n == victim || slices.Contains(masters, n) {
				continue
			}
			if role, err := n.Role(bg(t)); err == nil && role == "master" {
				promoted = time.Now()
			}
		}
		require.True(t, time.Now().Before(deadline), "no replica promoted")
		time.Sleep(20 * time.Millisecond)
	}
	d := resumed(t, nodes[len(nodes)-1], clients, promoted, 3*time.Second)
	t.Logf("master %d killed with %d adapters up; replica promoted after %v; broadcasts to every node resumed %v after the promotion",
		victim.Port, len(nodes), promoted.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))
}

// subscribers is how many connections on one node subscribe to the root
// namespace's channels (plain or pattern).
func subscribers(t *testing.T, n *redistest.Server) int {
	t.Helper()
	out, err := n.Exec(bg(t), "redis-cli", "-p", fmt.Sprint(n.Port), "PUBSUB", "NUMSUB", "socket.io-request#/#")
	require.NoError(t, err, out)
	var ch string
	var count int
	_, _ = fmt.Sscan(out, &ch, &count)
	return count
}

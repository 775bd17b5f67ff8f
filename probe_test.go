package redisadapter_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/faultproxy"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// Bounds of the fault tests: generous, so that a loaded machine does not
// fail them; the figures measured are logged. The defaults aim at
// detection within 1.5 s (ProbeInterval 400 ms + ProbeTimeout 800 ms).
const (
	detectWithin = 4 * time.Second
	pingWithin   = 500 * time.Millisecond // "at once": room for a loaded machine, far below a call that waits on the hung Redis
)

// pingFailsWithin polls a's Ping until it fails with ErrUnavailable, checks
// that no call took longer than pingWithin, and returns how long after
// since it failed.
func pingFailsWithin(t *testing.T, a *redisadapter.Adapter, since time.Time) time.Duration {
	t.Helper()
	var slowest time.Duration
	await.True(t, detectWithin, 10*time.Millisecond, "Ping fails", func() bool {
		start := time.Now()
		err := a.Ping(context.Background())
		slowest = max(slowest, time.Since(start))
		if err == nil {
			return false
		}
		require.ErrorIs(t, err, redisadapter.ErrUnavailable)
		return true
	})
	took := time.Since(since)
	require.Less(t, slowest, pingWithin, "the slowest Ping call")
	t.Logf("Ping failing %v after the fault began (slowest Ping call %v)", took.Round(time.Millisecond), slowest)
	return took
}

// A node whose connections to Redis stay open but stop carrying anything
// (a blackhole between it and Redis) says so within the bound, renews
// them when the fault ends, and receives the other nodes' broadcasts again.
func TestProbeDetectsBlackhole(t *testing.T) {
	for _, mode := range []struct {
		name string
		conn func(addr string) redisadapter.Connector
	}{
		{"Classic", func(addr string) redisadapter.Connector { return redisadapter.Standalone{Addr: addr} }},
		{"Streams", func(addr string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{Addr: addr}}
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv := redistest.Start(t)
			px := faultproxy.Start(t, srv.Addr())
			victim := startNode(t, mode.conn(px.Addr()), nil)
			other := startNode(t, mode.conn(srv.Addr()), nil)
			vc := victim.client(t, "r")
			require.NoError(t, other.a.To("r").Emit(bg(t), "before", 1))
			expect(t, vc, "before", "1")
			eventually(t, "a probe came back", func() bool { return victim.a.Stats().ProbeLag > 0 })
			require.NoError(t, victim.a.Ping(bg(t)))

			px.Blackhole(faultproxy.Both)
			pingFailsWithin(t, victim.a, time.Now())
			require.Positive(t, victim.a.Stats().ProbeFailures)
			require.NoError(t, other.a.Ping(bg(t)), "the node outside the fault is healthy")

			px.Heal()
			healed := time.Now()
			got := resumed(t, other, []*siotest.Client{vc}, healed, 2*wait)
			t.Logf("the other node's broadcasts reach the victim's client again %v after the fault ended", got.Round(time.Millisecond))
			eventually(t, "the victim is healthy again", func() bool { return victim.a.Ping(bg(t)) == nil })
			t.Logf("Ping healthy again %v after the fault ended", time.Since(healed).Round(time.Millisecond))
			eventually(t, "the victim keeps none of the silent connections: its subscriptions are on new ones",
				func() bool { return px.Silent() == 0 })
			s := victim.a.Stats()
			require.True(t, s.Subscribed)
			require.Positive(t, s.Outages)
			require.Positive(t, s.ProbeLagMax)
			require.Positive(t, s.ProbeLagMedian)
			require.LessOrEqual(t, s.ProbeLagMedian, s.ProbeLagMax)
		})
	}
}

// An idle node probes a few times a second, and reports the round trip.
func TestProbeCost(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	eventually(t, "a probe came back", func() bool { return n.a.Stats().ProbeLag > 0 })
	before := n.a.Stats().Received
	start := time.Now()
	await.True(t, wait, 50*time.Millisecond, "two seconds pass", func() bool { return time.Since(start) >= 2*time.Second })
	perSecond := float64(n.a.Stats().Received-before) / time.Since(start).Seconds()
	t.Logf("an idle node reads %.1f probes/s (one PUBLISH each); lag %v, max %v", perSecond, n.a.Stats().ProbeLag, n.a.Stats().ProbeLagMax)
	require.Greater(t, perSecond, 0.5, "the node probes")
	require.Less(t, perSecond, 5.0, "a few commands per second at most")
	require.Zero(t, n.a.Stats().Malformed, "probes are not counted as malformed")
	require.Zero(t, n.a.Stats().ProbeFailures)
}

// While Redis is frozen, every operation that targets this node's sockets
// reaches them, and returns what it could not do; Ping answers at once
// throughout, and fails once the probe declares the connection dead.
func TestLocalDeliveryWhileRedisFrozen(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil) // another node: the fleet is not a node alone
	staff, other := a.client(t, "staff"), a.client(t)
	ackAs(staff, "staff")

	srv.Freeze(t)
	frozen := time.Now()
	// Before the node knows: the event reaches the local client at once,
	// whatever publishing does (queued for a Redis that does not answer).
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = a.a.To("staff").Emit(ctx, "early", 1)
	expect(t, staff, "early", "1")
	start := time.Now()
	acks, err := a.a.To("staff").Timeout(wait).EmitWithAck(ctx, "order", 1)
	t.Logf("EmitWithAck before detection returned in %v: %v", time.Since(start).Round(time.Millisecond), err)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable)
	require.ErrorContains(t, err, "other nodes were not reached")
	require.Equal(t, []string{"staff"}, whoAcked(t, acks, "1"))
	expectEventOnly(t, staff, "order")

	pingFailsWithin(t, a.a, frozen)

	t.Run("Emit", func(t *testing.T) {
		err := a.a.To("staff").Emit(bg(t), "news", 2)
		require.ErrorIs(t, err, redisadapter.ErrPublish)
		expect(t, staff, "news", "2")
	})
	t.Run("EmitWithAck", func(t *testing.T) {
		start := time.Now()
		acks, err := a.a.To("staff").Timeout(wait).EmitWithAck(bg(t), "order", 3)
		require.ErrorIs(t, err, redisadapter.ErrUnavailable)
		require.ErrorContains(t, err, "other nodes were not reached")
		require.Equal(t, []string{"staff"}, whoAcked(t, acks, "3"))
		require.Less(t, time.Since(start), wait/2, "does not wait for the fleet")
		expectEventOnly(t, staff, "order")
	})
	t.Run("SocketsJoin", func(t *testing.T) {
		err := a.a.Of("/").SocketsJoin(bg(t), "everyone")
		require.ErrorIs(t, err, redisadapter.ErrPublish)
		n, err := a.a.To("everyone").Local().CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 2, n, "both local sockets joined")
	})
	t.Run("SocketsLeave", func(t *testing.T) {
		err := a.a.To("staff").SocketsLeave(bg(t), "everyone")
		require.ErrorIs(t, err, redisadapter.ErrPublish)
		n, err := a.a.To("everyone").Local().CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 1, n, "the staff socket left")
	})
	t.Run("DisconnectSockets", func(t *testing.T) {
		err := a.a.Of("/").Except("staff").DisconnectSockets(bg(t), true)
		require.ErrorIs(t, err, redisadapter.ErrPublish)
		select {
		case <-other.Closed():
		case <-time.After(wait):
			t.Fatal("the local socket was not disconnected")
		}
	})
	require.Error(t, a.a.Ping(bg(t)), "still frozen")

	srv.Thaw(t)
	thawed := time.Now()
	eventually(t, "the node is healthy again", func() bool { return a.a.Ping(bg(t)) == nil })
	t.Logf("Ping healthy again %v after Redis resumed", time.Since(thawed).Round(time.Millisecond))
}

// expectEventOnly asserts that the next event c receives is name,
// whatever its arguments.
func expectEventOnly(t *testing.T, c *siotest.Client, name string) {
	t.Helper()
	e, err := c.NextAny(wait)
	require.NoError(t, err, "waiting for %q", name)
	require.Equal(t, name, e.Name)
}

// The probe comes back in every mode and deployment: a node's own channel
// is read in each (SUBSCRIBE in classic and streams, SSUBSCRIBE in sharded
// mode), and no probe is counted as malformed. Outside a cluster every
// other probe is sent without a slot (probe.go), as a PUBLISH, or as the
// SPUBLISH sharded pub/sub reads.
func TestProbeEveryMode(t *testing.T) {
	cluster := sharedCluster(t)
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name string
		conn redisadapter.Connector
	}{
		{"StandaloneClassic", redisadapter.Standalone{Addr: srv.Addr()}},
		{"StandaloneStreamsSharded", redisadapter.Streams{Connector: redisadapter.Standalone{Addr: srv.Addr()}, ShardedPubSub: true}},
		{"ClusterClassic", redisadapter.Cluster{Addrs: cluster.Addrs()}},
		{"ClusterSharded", redisadapter.Cluster{Addrs: cluster.Addrs(), Sharded: true}},
		{"ClusterStreamsSharded", redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: cluster.Addrs(), Sharded: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, tc.conn, &redisadapter.Options{Namespaces: []string{"/", "/admin"}})
			eventually(t, "probes come back", func() bool { return n.a.Stats().ProbeLag > 0 })
			first := n.a.Stats().Received
			eventually(t, "more probes come back", func() bool { return n.a.Stats().Received >= first+4 })
			s := n.a.Stats()
			require.Zero(t, s.ProbeFailures)
			require.Zero(t, s.Malformed)
			require.NoError(t, n.a.Ping(bg(t)))
		})
	}
}

// A room channels' connection to one master that stops delivering (the
// master frozen, every connection to it kept open) is declared dead by its
// own probe within the bound, though the node's other subscriptions sit on
// masters that still answer, and is renewed alone: once the master
// answers again (thawed, or its replica promoted), the room receives.
func TestShardProbeRenewsSilentRoomConnection(t *testing.T) {
	set := redistest.StartCluster(t)
	c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
	a, sender := startNode(t, c, nil), startNode(t, c, nil)
	// The victim serves none of a's own subscriptions: the namespace's
	// channel and a's own.
	mine := map[*redistest.Server]bool{
		slotOwner(t, set, defaultNames.namespace("/")):               true,
		slotOwner(t, set, defaultNames.namespace("/")+a.a.UID()+"#"): true,
	}
	var victim *redistest.Server
	for _, n := range set.Nodes {
		if role, err := n.Role(bg(t)); err == nil && role == "master" && !mine[n] {
			victim = n
			break
		}
	}
	require.NotNil(t, victim)
	// A room whose channel the victim serves.
	var room string
	for i := 0; room == ""; i++ {
		if r := fmt.Sprintf("room-%d", i); slotOwner(t, set, defaultNames.room("/", r)) == victim {
			room = r
		}
	}
	ac := a.client(t, room)
	shardSubscribers(t, c, defaultNames.room("/", room), 1)
	everyRoomReceives(t, sender, ac, []string{room}, "before")

	victim.Freeze(t)
	frozen := time.Now()
	pingFailsWithin(t, a.a, frozen)
	require.Positive(t, a.a.Stats().ProbeFailures)
	victim.Thaw(t)
	eventually(t, "a healthy again", func() bool { return a.a.Ping(bg(t)) == nil })
	everyRoomReceives(t, sender, ac, []string{room}, "after")
}

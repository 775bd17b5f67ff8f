package redisadapter_test

import (
	"context"
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
	pingWithin   = 250 * time.Millisecond // /health-check's budget
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

			px.Blackhole()
			pingFailsWithin(t, victim.a, time.Now())
			require.Positive(t, victim.a.Stats().ProbeFailures)
			require.NoError(t, other.a.Ping(bg(t)), "the node outside the fault is healthy")

			px.Heal()
			healed := time.Now()
			got := resumed(t, other, []*siotest.Client{vc}, healed, 2*wait)
			t.Logf("the other node's broadcasts reach the victim's client again %v after the fault ended", got.Round(time.Millisecond))
			eventually(t, "the victim is healthy again", func() bool { return victim.a.Ping(bg(t)) == nil })
			t.Logf("Ping healthy again %v after the fault ended", time.Since(healed).Round(time.Millisecond))
			s := victim.a.Stats()
			require.True(t, s.Subscribed)
			require.Positive(t, s.Outages)
			require.Positive(t, s.ProbeLagMax)
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

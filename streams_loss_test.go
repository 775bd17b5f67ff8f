package redisadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// received collects the sequence numbers of the "m" events a client gets.
type received struct {
	mu   sync.Mutex
	seqs []int
	bad  []string
	more chan struct{} // a token per event
}

func collectSeqs(t *testing.T, c *siotest.Client) *received {
	r := &received{more: make(chan struct{}, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		for {
			var e siotest.Event
			select {
			case e = <-c.Events:
			case <-c.Closed():
				return
			}
			r.mu.Lock()
			var n int
			if e.Name != "m" || len(e.Args) != 1 || json.Unmarshal(e.Args[0], &n) != nil {
				r.bad = append(r.bad, e.Name)
			} else {
				r.seqs = append(r.seqs, n)
			}
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

// waitFor waits until n events arrived, or fails at the deadline.
func (r *received) waitFor(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for r.count() < n {
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d of %d events within %v", r.count(), n, timeout)
		}
	}
}

// inOrderOnce checks that seqs is exactly 0..n-1.
func (r *received) inOrderOnce(t *testing.T, n int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.bad)
	require.Len(t, r.seqs, n)
	for i, s := range r.seqs {
		if s != i {
			t.Fatalf("event %d is %d: out of order or repeated (around: %v)", i, s, r.seqs[max(0, i-3):min(len(r.seqs), i+3)])
		}
	}
}

// cutOff is a second ACL user on srv for one node: its connections can be
// killed, and kept from coming back, while every other client stays.
type cutOff struct {
	t    *testing.T
	raw  rueidis.Client
	user string
}

// newCutOff returns the connectors of user and of the default user, which
// gets a password meanwhile: a connection whose AUTH fails is otherwise the
// default user's, and the node's reconnections would succeed.
func newCutOff(t *testing.T, srv *redistest.Server, user string) (c *cutOff, asUser, admin redisadapter.Standalone) {
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, ForceSingleClient: true, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(raw.Close)
	c = &cutOff{t: t, raw: raw, user: user}
	c.acl("on")
	require.NoError(t, raw.Do(bg(t), raw.B().Arbitrary("ACL", "SETUSER", "default", ">admin").Build()).Error())
	t.Cleanup(func() { // before the server stops
		_ = raw.Do(context.Background(), raw.B().Arbitrary("ACL", "SETUSER", "default", "nopass").Build()).Error()
	})
	return c, redisadapter.Standalone{Addr: srv.Addr(), Username: user, Password: "pw"},
		redisadapter.Standalone{Addr: srv.Addr(), Username: "default", Password: "admin"}
}

func (c *cutOff) acl(state string) {
	c.t.Helper()
	// After a Redis restart the first tries meet the closed connection, or
	// a server not listening yet (a container restarting).
	await.Check(c.t, wait, 10*time.Millisecond, "ACL SETUSER "+c.user+" "+state, func(ctx context.Context) error {
		return c.raw.Do(ctx, c.raw.B().Arbitrary("ACL", "SETUSER", c.user, "reset", state, ">pw", "~*", "&*", "+@all").Build()).Error()
	})
}

// away keeps n, connected as the user, from Redis: the user disabled,
// its connections killed, until n sees its subscriptions down.
func (c *cutOff) away(n *node) {
	c.t.Helper()
	c.acl("off")
	c.kill()
	eventually(c.t, "the node's subscriptions down", func() bool { return !n.a.Stats().Subscribed })
}

// kill closes every connection of the user, and reports how many.
func (c *cutOff) kill() int64 {
	c.t.Helper()
	n, err := c.raw.Do(bg(c.t), c.raw.B().ClientKill().User(c.user).Build()).AsInt64()
	require.NoError(c.t, err)
	return n
}

// A node whose connections are killed again and again while another keeps
// publishing delivers every broadcast, in order, once each; so does one
// kept away from Redis for a while (its user disabled) while Redis runs.
func TestStreamsNothingLostAcrossClientKill(t *testing.T) {
	srv := redistest.Start(t)
	cut, reader, admin := newCutOff(t, srv, "reader")
	a := startNode(t, redisadapter.Streams{Connector: admin}, nil)
	b := startNode(t, redisadapter.Streams{Connector: reader}, nil)
	got := collectSeqs(t, b.client(t, "r"))

	const n = 3000
	published := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		tick := time.NewTicker(time.Millisecond) // a steady stream, ~1,000/s
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if err := a.a.To("r").Emit(bg(t), "m", i); err != nil {
				published <- fmt.Errorf("emit %d: %w", i, err)
				return
			}
			sent.Add(1)
		}
		published <- a.a.Flush(bg(t))
	}()

	var killed int64
	for k := 1; k <= 4; k++ {
		got.waitFor(t, k*n/8, 2*wait)
		killed += cut.kill()
	}
	// Kept away while Redis runs: its reconnections are refused until the user is back.
	got.waitFor(t, 5*n/8, 2*wait)
	cut.acl("off")
	killed += cut.kill()
	during := got.count()
	eventually(t, "b's subscriptions down", func() bool { return !b.a.Stats().Subscribed })
	away := sent.Load()
	eventually(t, "a published n/8 more while b is away", func() bool { return sent.Load() >= away+n/8 })
	cut.acl("on")

	require.NoError(t, <-published)
	got.waitFor(t, n, 3*wait)
	got.inOrderOnce(t, n)
	require.GreaterOrEqual(t, killed, int64(5*2), "each kill closed the reader's XREAD and pub/sub connections")
	st := b.a.Stats()
	require.Zero(t, st.StreamGaps)
	require.Zero(t, st.QueueFull)
	t.Logf("%d events, %d connections killed, %d delivered before the long cut; stats %+v", n, killed, during, st)
}

// A publisher whose connections are killed while its XADDs are in flight
// sends them again on a new connection; the reader drops the second copy
// of those that had reached Redis: every broadcast arrives, in order, once,
// and no publish fails.
func TestStreamsPublisherKilledInFlight(t *testing.T) {
	srv := redistest.Start(t)
	cut, publisher, admin := newCutOff(t, srv, "publisher")
	var logs syncBuffer
	a := startNode(t, redisadapter.Streams{Connector: publisher}, &redisadapter.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	b := startNode(t, redisadapter.Streams{Connector: admin}, nil)
	got := collectSeqs(t, b.client(t, "r"))

	// Bursts queued faster than Redis answers, each cut short by a kill:
	// the kill finds XADDs in flight.
	const bursts, per = 20, 300
	for k := range bursts {
		for i := k * per; i < (k+1)*per; i++ {
			require.NoError(t, a.a.To("r").Emit(bg(t), "m", i))
		}
		cut.kill()
		got.waitFor(t, (k+1)*per, 2*wait) // also: the node is back before the next burst
	}
	require.NoError(t, a.a.Flush(bg(t)), "no publish failed for good")
	got.inOrderOnce(t, bursts*per)
	st := a.a.Stats()
	require.Zero(t, st.PublishFailures)
	require.Positive(t, st.Resent, "a kill found XADDs in flight")
	require.Contains(t, logs.String(), "sending them again (nothing lost so far)")
	require.NotContains(t, logs.String(), "failed", "nothing was lost")
	t.Logf("publisher %+v; reader dropped %d second copies", st, b.a.Stats().StreamDuplicates)
}

// A node away longer than the stream keeps entries finds its offset
// trimmed: it logs and counts the gap, and goes on with what is left.
func TestStreamsTrimmedOffsetCountsGap(t *testing.T) {
	srv := redistest.Start(t)
	cut, reader, admin := newCutOff(t, srv, "reader")
	mode := func(c redisadapter.Standalone) redisadapter.Connector {
		return redisadapter.Streams{Connector: c, MaxLen: 50}
	}
	a := startNode(t, mode(admin), nil)
	b := startNode(t, mode(reader), nil)
	got := collectSeqs(t, b.client(t, "r"))
	require.NoError(t, a.a.To("r").Emit(bg(t), "m", 0))
	got.waitFor(t, 1, wait)

	cut.away(b)
	// MAXLEN ~ trims whole stream nodes (100 entries by default): 1,000
	// entries leave about 100.
	const n = 1000
	for i := 1; i <= n; i++ {
		require.NoError(t, a.a.To("r").Emit(bg(t), "m", i))
	}
	require.NoError(t, a.a.Flush(bg(t)))
	cut.acl("on")

	eventually(t, "the gap counted", func() bool { return b.a.Stats().StreamGaps == 1 })
	// What the stream still holds arrives, ending with the last one.
	deadline := time.Now().Add(wait)
	for {
		got.mu.Lock()
		last := got.seqs[len(got.seqs)-1]
		count := len(got.seqs)
		got.mu.Unlock()
		if last == n {
			require.Less(t, count, n/2, "most of the entries were trimmed")
			break
		}
		require.True(t, time.Now().Before(deadline), "last event %d, want %d", last, n)
		select {
		case <-got.more:
		case <-time.After(time.Until(deadline)):
		}
	}
	t.Logf("delivered %d of %d after the gap; stats %+v", got.count(), n+1, b.a.Stats())
}

// A node coming back after a long gap catches up in batches of ReadCount,
// waiting for room in its queue rather than dropping (memory stays within
// ReceiveQueue plus one batch), while requests, which come on pub/sub, are
// still answered during the catch-up.
func TestStreamsCatchUpIsBoundedAndAnswers(t *testing.T) {
	srv := redistest.Start(t)
	cut, reader, admin := newCutOff(t, srv, "reader")
	mode := func(c redisadapter.Standalone) redisadapter.Connector {
		return redisadapter.Streams{Connector: c, MaxLen: 50_000}
	}
	opts := &redisadapter.Options{ReceiveQueue: 64}
	a := startNode(t, mode(admin), opts)
	b := startNode(t, mode(reader), opts)
	b.a.Of("/").OnServerSideEmit("ping", func([]json.RawMessage) any { return "pong" })
	got := collectSeqs(t, b.client(t, "r"))

	cut.away(b)
	const n = 20_000
	for i := range n {
		require.NoError(t, a.a.To("r").Emit(bg(t), "m", i))
	}
	require.NoError(t, a.a.Flush(bg(t)))
	cut.acl("on")

	maxDepth := 0
	answered := false
	deadline := time.Now().Add(4 * wait)
	for got.count() < n {
		require.True(t, time.Now().Before(deadline), "%d of %d caught up", got.count(), n)
		maxDepth = max(maxDepth, b.a.Stats().QueueDepth)
		if !answered && got.count() > 0 && got.count() < n/2 && b.a.Stats().Subscribed {
			// Mid catch-up: the request is answered within its timeout.
			acks, err := a.a.Of("/").ServerSideEmit(bg(t), "ping")
			require.NoError(t, err)
			require.Equal(t, []json.RawMessage{json.RawMessage(`"pong"`)}, acks)
			answered = got.count() < n
		}
		select {
		case <-got.more:
		case <-time.After(10 * time.Millisecond):
		}
	}
	got.inOrderOnce(t, n)
	require.True(t, answered, "the catch-up ended before the request could be made")
	st := b.a.Stats()
	require.Zero(t, st.QueueFull)
	require.Zero(t, st.StreamGaps)
	require.LessOrEqual(t, maxDepth, 3*64, "the receive queues stay within ReceiveQueue each")
	t.Logf("caught up %d entries; answered a request mid catch-up: %v; deepest queues %d", n, answered, maxDepth)
}

// With AOF (appendfsync always), a Redis killed and restarted keeps every
// entry it acknowledged: a node that was away while they were published
// (and so had read none) delivers all of them after the restart, in order,
// once, and then what is published after it.
func TestStreamsRedisRestartWithAOF(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", "{dir}")
	cut, reader, admin := newCutOff(t, srv, "reader")
	a := startNode(t, redisadapter.Streams{Connector: admin}, nil)
	b := startNode(t, redisadapter.Streams{Connector: reader}, nil)
	got := collectSeqs(t, b.client(t, "r"))
	require.NoError(t, a.a.To("r").Emit(bg(t), "m", 0))
	got.waitFor(t, 1, wait)

	cut.away(b)
	const n = 2000
	for i := 1; i < n/2; i++ {
		require.NoError(t, a.a.To("r").Emit(bg(t), "m", i))
	}
	require.NoError(t, a.a.Flush(bg(t)), "Redis acknowledged every entry")
	require.Equal(t, 1, got.count())
	srv.Stop(t) // SIGKILL: no save on shutdown; only the AOF keeps the entries
	srv.Restart(t)
	cut.acl("on") // ACL users are configuration, not data: the restart dropped it
	for _, x := range []*node{a, b} {
		eventually(t, "the node serves again", func() bool { return x.a.Ping(bg(t)) == nil })
	}
	for i := n / 2; i < n; i++ {
		require.NoError(t, a.a.To("r").Emit(bg(t), "m", i))
	}
	require.NoError(t, a.a.Flush(bg(t)))
	got.waitFor(t, n, 2*wait)
	got.inOrderOnce(t, n)
	require.Zero(t, b.a.Stats().StreamGaps)
}

// A Sentinel failover in streams mode, while one node keeps publishing to
// another. The XADDs that fail during the election are sent again to the
// new master, and the reader resumes from its last entry there: every
// broadcast queued after the master died arrives, and nothing arrives out
// of order or twice. What can be lost is the tail the replica had not
// received before the master died (asynchronous replication): only
// broadcasts queued before the kill, counted here.
func TestStreamsSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	c := redisadapter.Streams{Connector: redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}}
	a := startNode(t, c, nil)
	b := startNode(t, c, nil)
	got := collectSeqs(t, b.client(t, "r"))

	var mu sync.Mutex
	var accepted []int
	var emitting atomic.Int64 // the broadcast whose Emit is under way
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a producer loop, one broadcast after another, ~1,000/s
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// During the election Emit waits for its answer and may fail
			// after RequestTimeout: refused, the caller knows.
			emitting.Store(int64(i))
			if a.a.To("r").Emit(bg(t), "m", i) == nil {
				mu.Lock()
				accepted = append(accepted, i)
				mu.Unlock()
			}
		}
	}()
	acceptedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}

	got.waitFor(t, 500, wait)
	old, err := set.CurrentMaster(bg(t))
	require.NoError(t, err)
	set.Master.Stop(t)
	// Broadcasts after this one were queued once the master was dead: the
	// old master never had them. (This one's Emit may have returned before
	// the kill and been counted accepted only after it.)
	lastBeforeKill := int(emitting.Load())

	// Generous: a sentinel stalled for 2 s on a loaded machine enters TILT
	// and elects nobody for 30 s.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if m, err := set.CurrentMaster(bg(t)); err == nil && m != old {
			break
		}
		require.True(t, time.Now().Before(deadline), "no new master elected:\n%s", set.Describe(bg(t)))
		time.Sleep(20 * time.Millisecond)
	}
	elected := acceptedCount()
	eventually(t, "500 more accepted after the election", func() bool { return acceptedCount() >= elected+500 })
	close(stop)
	<-done
	require.NoError(t, a.a.Flush(bg(t)))

	mu.Lock()
	want := accepted
	mu.Unlock()
	last := want[len(want)-1]
	eventually(t, "the last broadcast delivered", func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.seqs) > 0 && got.seqs[len(got.seqs)-1] == last
	})
	got.mu.Lock()
	defer got.mu.Unlock()
	require.Empty(t, got.bad)
	for i := 1; i < len(got.seqs); i++ {
		require.Less(t, got.seqs[i-1], got.seqs[i], "out of order or twice around %d", i)
	}
	delivered := make(map[int]bool, len(got.seqs))
	for _, s := range got.seqs {
		delivered[s] = true
	}
	var lostBefore, beforeKill int
	for _, id := range want {
		if id <= lastBeforeKill {
			beforeKill++
		}
		if delivered[id] {
			continue
		}
		require.LessOrEqual(t, id, lastBeforeKill, "broadcast %d, queued after the master died, was lost", id)
		lostBefore++
	}
	st := a.a.Stats()
	t.Logf("%d accepted (%d before the kill), %d delivered; lost with the old master's unreplicated tail: %d; publisher resent %d, failed %d",
		len(want), beforeKill, len(got.seqs), lostBefore, st.Resent, st.PublishFailures)
}

// The stream's slot moves to another master (a resharding: the stream key
// migrated with it) while one node publishes to another in streams mode:
// the publisher's XADDs and the reader's XREAD follow the slot, and every
// broadcast arrives, in order, once.
func TestStreamsKeySlotMigrates(t *testing.T) {
	set := redistest.StartCluster(t) // of its own: see TestShardedRoomSlotMigrates
	stream := uniqueKey(t)
	c := redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs()}, Name: stream}
	opts := &redisadapter.Options{Key: uniqueKey(t)}
	a, b := startNode(t, c, opts), startNode(t, c, opts)
	got := collectSeqs(t, b.client(t, "r"))

	var sent atomic.Int64
	stop := make(chan struct{})
	published := make(chan error, 1)
	go func() { // a producer loop, ~1,000/s
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				published <- a.a.Flush(bg(t))
				return
			case <-tick.C:
			}
			if err := a.a.To("r").Emit(bg(t), "m", i); err != nil {
				published <- fmt.Errorf("emit %d: %w", i, err)
				return
			}
			sent.Add(1)
		}
	}()
	got.waitFor(t, 300, wait)
	slot, target := moveSlot(t, set, stream)
	require.Equal(t, "1", clusterCLI(t, target, "EXISTS", stream), "the stream moved with its slot")
	moved := sent.Load()
	eventually(t, "300 more published after the move", func() bool { return sent.Load() >= moved+300 })
	close(stop)
	require.NoError(t, <-published)
	n := int(sent.Load())
	got.waitFor(t, n, 2*wait)
	got.inOrderOnce(t, n)
	t.Logf("slot %d moved with %d broadcasts sent before it, %d in all; publisher %+v", slot, moved, n, a.a.Stats())
}

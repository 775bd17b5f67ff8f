package redisadapter

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// A node that starts waiting for its subscriptions during an outage still
// waits out the settle delay once they are back: it used to compute the
// delay before waiting and return as soon as they were live.
func TestWaitReadySettlesAfterAnOutage(t *testing.T) {
	var c counters
	tr := newSubscriptionTracker(1, &c, nil)
	tr.hook(rueidis.PubSubSubscription{Kind: "subscribe", Channel: "ch"})
	require.True(t, tr.ready(), "the first subscription needs no settling")
	tr.down(map[string]queueKind{"ch": toBroadcasts}, nil)
	require.False(t, tr.ready())

	ready := make(chan time.Time, 1)
	go func() {
		if tr.waitReady(context.Background()) == nil {
			ready <- time.Now()
		}
	}()
	restored := time.Now()
	tr.hook(rueidis.PubSubSubscription{Kind: "subscribe", Channel: "ch"})
	select {
	case at := <-ready:
		require.GreaterOrEqual(t, at.Sub(restored), settle, "waitReady returned before the others could catch up")
	case <-time.After(5 * time.Second):
		t.Fatal("waitReady never returned")
	}
	require.True(t, tr.ready())
	require.EqualValues(t, 1, c.resubscribes.Load())
}

// The settle delay is skipped when the outage followed a probe that found
// the fault on the node's own way to Redis, and only then: not when
// another probe of the same outage may have found Redis silent for
// everyone, nor in a later outage once a probe came back.
func TestSettleSkippedAfterOwnBlackhole(t *testing.T) {
	var c counters
	tr := newSubscriptionTracker(1, &c, nil)
	sub := rueidis.PubSubSubscription{Kind: "subscribe", Channel: "ch"}
	tr.hook(sub)
	outage := func(notes ...bool) bool {
		for _, own := range notes {
			tr.noteProbeFailure(own)
		}
		tr.down(map[string]queueKind{"ch": toBroadcasts}, nil)
		tr.attempting(map[string]queueKind{"ch": toBroadcasts})
		tr.hook(sub)
		return tr.ready()
	}
	require.True(t, outage(true), "own blackhole: no settling")
	_, ok := tr.takeRenewal()
	require.True(t, ok, "after a failed probe, the connections dialed before the renewal are closed")
	_, ok = tr.takeRenewal()
	require.False(t, ok, "once")
	require.False(t, outage(), "an outage without a probe's verdict settles")
	_, ok = tr.takeRenewal()
	require.False(t, ok, "an outage without a failed probe closes nothing")
	require.False(t, outage(true, false), "a probe that may have found Redis silent for everyone keeps the settling")
	require.False(t, outage(false, true))
	sent := time.Now()
	tr.noteProbeFailure(true)
	tr.forgetProbeFailures(sent)
	require.True(t, outage(), "a probe sent before the failure (another namespace's) does not forget it")
	tr.noteProbeFailure(true)
	tr.forgetProbeFailures(time.Now())
	require.False(t, outage(), "a probe back forgets the verdict")
}

// testNS is the protocol the test publishers publish with.
var testNS = classic{key: "socket.io", uid: "test"}.namespace("/")

// testMessage is a pub/sub message on channel "ch".
func testMessage(payload []byte) message { return message{channel: "ch", payload: payload} }

// newTestPublisher is a publisher on a real Redis; heldSince as
// newPublisher's (nil: an Emitter's).
func newTestPublisher(t *testing.T, o Options, heldSince func(string, time.Time) bool) (*publisher, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	o.setDefaults()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, DisableRetry: true})
	require.NoError(t, err)
	p := newPublisher(client, o, "test", slog.Default(), nil, heldSince)
	t.Cleanup(func() {
		<-p.closeNow()
		client.Close()
	})
	return p, srv
}

// A SPUBLISH that the server says reached none of its subscribers, on a
// channel this node subscribed to before it was sent, is counted failed:
// a master demoted while frozen answers so for what it executes once it
// thaws. On a channel the node does not hold, no subscriber is no loss.
func TestPublishThatReachedNobodyIsAFailure(t *testing.T) {
	heldFrom := time.Now()
	held := func(ch string, at time.Time) bool { return ch == "held" && heldFrom.Before(at) }
	p, srv := newTestPublisher(t, Options{}, held)
	ns := newShardedNamespace("socket.io", "test", "/")
	ctx := context.Background()

	require.NoError(t, p.publish(ctx, ns, message{channel: "not-held", payload: []byte("x")}))
	require.NoError(t, p.flush(ctx), "nobody subscribes a channel the node does not hold: nothing lost")

	err := p.publishWait(ctx, ns, message{channel: "held", payload: []byte("x")})
	require.ErrorIs(t, err, ErrPublish)
	require.ErrorContains(t, err, "no subscriber")
	require.EqualValues(t, 1, p.failures.Load())

	// Once a subscriber reads the channel, the same publish is delivered.
	sub, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(sub.Close)
	dc, release := sub.Dedicate()
	t.Cleanup(release)
	require.NoError(t, dc.Do(ctx, dc.B().Ssubscribe().Channel("held").Build()).Error())
	require.NoError(t, p.publishWait(ctx, ns, message{channel: "held", payload: []byte("x")}))
	require.EqualValues(t, 1, p.failures.Load())
}

// After an outage, a broadcast that Redis says reached fewer subscribers
// than the last one before it counts failed within afterOutage of the
// subscriptions' return, and not after; a message without an audience is
// not compared (audience's rules: TestAudienceCountsAfterAnOutage). One
// that reached nobody at all, after others read the last ones, counts
// failed outside a window too: no other node received it.
func TestFewerSubscribersWithinTheWindowAfterAnOutage(t *testing.T) {
	noShards := func(string, time.Time) bool { return false } // a classic node's
	p, srv := newTestPublisher(t, Options{}, noShards)
	ns := classic{key: "socket.io", uid: "test", counted: true}.namespace("/")
	broadcast, err := ns.encodeBroadcast(selector{}, "n", nil)
	require.NoError(t, err)
	ctx := context.Background()

	sub, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(sub.Close)
	var subscribers []func()
	for range 2 {
		dc, release := sub.Dedicate()
		require.NoError(t, dc.Do(ctx, dc.B().Psubscribe().Pattern("socket.io#/#*").Build()).Error())
		subscribers = append(subscribers, release)
	}
	require.NoError(t, p.publishWait(ctx, ns, broadcast), "reached both subscribers")
	leave := func(n int64) {
		t.Helper()
		subscribers[0]()
		subscribers = subscribers[1:]
		await.True(t, 5*time.Second, 10*time.Millisecond, "a subscriber gone", func() bool {
			m, err := p.client.Do(ctx, p.client.B().Publish().Channel(broadcast.channel).Message("x").Build()).AsInt64()
			return err == nil && m == n
		})
	}
	leave(1)

	p.outageEnded(time.Now())
	err = p.publishWait(ctx, ns, broadcast)
	require.ErrorIs(t, err, ErrPublish)
	require.ErrorIs(t, err, errReachedFewer)
	require.NotErrorIs(t, err, ErrUnavailable, "Redis answered")
	require.EqualValues(t, 1, p.failures.Load())
	other := message{channel: "socket.io-request#/#", payload: []byte("x")}
	require.NoError(t, p.publishWait(ctx, ns, other), "a message without an audience is not compared")

	p.outageEnded(time.Now().Add(-p.outageSpan() - time.Millisecond))
	require.NoError(t, p.publishWait(ctx, ns, broadcast), "the window after that outage is over")
	require.EqualValues(t, 1, p.failures.Load())

	leave(0)
	require.ErrorIs(t, p.publishWait(ctx, ns, broadcast), errReachedNobody)
	require.EqualValues(t, 2, p.failures.Load())
}

// What an audience compares after an outage, on a clock of its own:
// the count before it, until a broadcast reaches as many again (a node
// leaving after that counts nothing, and does not lower the count before
// the next outage until it held); a lower count outside an outage only
// once it held, the broadcasts in between no more than the hold apart
// (one answered as the outage began, this node's own subscriptions going,
// is not the fleet's); a count older than countKept when the outage
// ended, nothing. A broadcast that reached nobody, after others read the
// last ones, within countKept.
func TestAudienceCountsAfterAnOutage(t *testing.T) {
	const ms = int64(time.Millisecond)
	hold, span := 1200*ms, int64(afterOutage)
	window := func(restored int64) int64 { return restored + span }
	var a audience
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	require.False(t, a.reachedFewer(1, 100*ms, 0, span, hold), "no outage: a node may have left")
	w := window(200 * ms)
	require.True(t, a.reachedFewer(1, 250*ms, w, span, hold), "the count lower for 100 ms is not the fleet's yet")
	require.True(t, a.reachedFewer(1, 300*ms, w, span, hold))
	require.False(t, a.reachedFewer(2, 350*ms, w, span, hold), "back")
	require.False(t, a.reachedFewer(1, 400*ms, w, span, hold), "a node leaving once the count was back")
	require.True(t, a.reachedFewer(1, 550*ms, window(500*ms), span, hold), "the lower count had not held: the next outage compares with 2")

	a = audience{}
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	require.False(t, a.reachedFewer(1, 100*ms, 0, span, hold))
	require.False(t, a.reachedFewer(1, 100*ms+hold, 0, span, hold), "a node left: the lower count held")
	require.False(t, a.reachedFewer(1, 2*hold, window(2*hold), span, hold), "as many as before the outage")

	a = audience{}
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	require.False(t, a.reachedFewer(1, 100*ms, 0, span, hold))
	require.False(t, a.reachedFewer(1, 100*ms+3*hold, 0, span, hold), "lower again after a silence: the hold starts again")
	require.True(t, a.reachedFewer(1, 200*ms+3*hold, window(150*ms+3*hold), span, hold), "the count before is still 2")

	a = audience{}
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	w = window(10 * ms)
	require.True(t, a.reachedFewer(1, 20*ms, w, span, hold))
	require.False(t, a.reachedFewer(1, w+ms, w, span, hold), "the window is over")

	a = audience{}
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	restored := int64(countKept) + 10*ms
	require.False(t, a.reachedFewer(1, restored+ms, window(restored), span, hold), "the count was older than countKept")

	a = audience{}
	require.False(t, a.reachedFewer(2, 0, 0, span, hold))
	require.True(t, a.reachedNobody(0, 10*ms))
	require.False(t, a.reachedNobody(1, 10*ms), "this node's own read it")
	require.False(t, a.reachedNobody(0, int64(countKept)+ms), "others read broadcasts longer ago than countKept")
}

// A shard channel counts as held from its first confirmation, through an
// outage and its renewal: what was published meanwhile was wanted.
func TestShardChannelHeldThroughARenewal(t *testing.T) {
	var c counters
	tr := newSubscriptionTracker(2, &c, nil)
	before := time.Now()
	tr.hook(rueidis.PubSubSubscription{Kind: "ssubscribe", Channel: "shard"})
	tr.hook(rueidis.PubSubSubscription{Kind: "subscribe", Channel: "plain"})
	require.False(t, tr.heldSince("shard", before), "not held before its confirmation")
	after := time.Now().Add(time.Millisecond)
	require.True(t, tr.heldSince("shard", after))
	require.False(t, tr.heldSince("plain", after), "a PUBLISH's count is not a SPUBLISH's")
	tr.down(map[string]queueKind{"shard": toBroadcasts}, nil)
	require.True(t, tr.heldSince("shard", after), "a lost subscription is renewed")
}

// A failure is reported to a Flush even when an earlier Flush gave up
// waiting: it used to be handed to the abandoned one and lost. Redis is
// paused, not stopped, so that the first Flush gives up before any answer
// (a refused dial could answer it first).
func TestFlushGivenUpDoesNotSwallowAFailure(t *testing.T) {
	p, _ := newTestPublisher(t, Options{}, func(ch string, _ time.Time) bool { return ch == "held" })
	ns := newShardedNamespace("socket.io", "test", "/")
	ctx := context.Background()

	require.NoError(t, p.client.Do(ctx, p.client.B().ClientPause().Timeout(1000).Write().Build()).Error())
	// Nobody reads "held": once the pause ends, Redis answers that it
	// reached no subscriber, a failure.
	require.NoError(t, p.publish(ctx, ns, message{channel: "held", payload: []byte("lost")}))
	soon, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.flush(soon), context.DeadlineExceeded, "Redis is paused: no answer yet")
	require.ErrorIs(t, p.flush(ctx), ErrPublish)
	require.NoError(t, p.flush(ctx), "a failure is reported once")
}

// A batch holding only Flush markers says nothing about Redis: it used to
// clear the flag that makes publishes wait for their answer.
func TestFlushAloneKeepsTheOutageKnown(t *testing.T) {
	p, srv := newTestPublisher(t, Options{RequestTimeout: time.Second}, nil)
	srv.Stop(t)
	require.NoError(t, p.publish(context.Background(), testNS, testMessage([]byte("lost"))))
	require.ErrorIs(t, p.flush(context.Background()), ErrPublish)
	require.NoError(t, p.flush(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.publish(ctx, testNS, testMessage([]byte("x"))), ErrPublish, "after the outage was seen, publish waits for its answer")
}

// The queued and in-flight bytes stay within PublishQueue.
func TestPublishQueueBoundsBytes(t *testing.T) {
	p, srv := newTestPublisher(t, Options{PublishQueue: 1000, RequestTimeout: 2 * time.Second}, nil)
	pause, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	defer pause.Close()
	require.NoError(t, pause.Do(context.Background(), pause.B().ClientPause().Timeout(1500).Write().Build()).Error())
	payload := make([]byte, 300)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	queued := 0
	for p.publish(ctx, testNS, testMessage(payload)) == nil {
		queued++
		p.mu.Lock()
		require.LessOrEqual(t, p.bytes, 1000)
		p.mu.Unlock()
	}
	require.Equal(t, 3, queued, "300-byte messages within 1000 bytes, in flight included")
	require.NoError(t, p.flush(context.Background()), "markers take no room: Flush waits for Redis, not for room")
}

// mayResend tells a failure that may have left a write out of Redis, and
// may succeed later, from one Redis refused for good; the refusals here
// are real Redis replies.
func TestMayResend(t *testing.T) {
	ctx := context.Background()
	xadd := func(serverArgs []string, stringInPlace bool) error {
		srv := redistest.Start(t, serverArgs...)
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		require.NoError(t, err)
		defer c.Close()
		if stringInPlace {
			require.NoError(t, c.Do(ctx, c.B().Set().Key("s").Value("x").Build()).Error())
		}
		err = c.Do(ctx, c.B().Xadd().Key("s").Id("*").FieldValue().FieldValue("f", "v").Build()).Error()
		_, answered := rueidis.IsRedisErr(err)
		require.True(t, answered, "%v", err)
		return err
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, false},
		{"connection closed (a Sentinel client moved to the new master)", rueidis.ErrClosing, true},
		{"connection dropped", io.EOF, true},
		{"timed out", context.DeadlineExceeded, true},
		{"too few replicas (NOREPLICAS)", xadd([]string{"--min-replicas-to-write", "1"}, false), true},
		{"key of another type (WRONGTYPE)", xadd(nil, true), false},
	} {
		require.Equal(t, c.want, mayResend(c.err), "%s: %v", c.name, c.err)
	}
}

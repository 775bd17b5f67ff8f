package redisadapter

// The receive side: subscription loops that survive reconnects, and the
// queues between Redis and the work done for each message.
//
// rueidis runs the message callback on the connection's reader goroutine, so
// the callback only routes each message to a bounded queue: Redis is read at
// full speed whatever the sockets do (a subscriber that reads too slowly is
// disconnected by Redis and loses everything in flight). Broadcasts,
// requests and responses have a queue and a worker each, so a slow
// ServerSideEmit handler delays neither deliveries nor this node's own
// requests.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// route is where the messages of one channel or pattern go.
type route struct {
	ns    *namespace
	queue queueKind
}

// inbound is a message on its queue, with the namespace its route named:
// the reader routes each message once.
type inbound struct {
	rueidis.PubSubMessage
	ns  *namespace
	req *request // a request the broadcast worker decoded already
}

// start launches the workers and the subscription loops and waits until
// every subscription is confirmed.
func (a *Adapter) start(ctx context.Context) error {
	loopCtx, stop := context.WithCancel(context.Background())
	a.stop = stop

	a.goWorker(a.broadcasts, a.handleBroadcast)
	a.goWorker(a.requests, a.handleRequest)
	a.goWorker(a.responses, a.handleResponse)

	var subs []subscription
	for _, ns := range a.namespaces {
		for _, sub := range ns.proto.subscriptions(a.client) {
			for name, q := range sub.routes {
				a.routes[name] = route{ns: ns, queue: q}
			}
			subs = append(subs, sub)
		}
	}
	a.subs = newSubscriptionTracker(len(a.routes), &a.stats, a.log)
	a.subs.restoredF = func() { a.spawn(func() { a.refreshConnections(loopCtx) }) }
	for _, sub := range subs {
		a.spawn(func() { a.receiveLoop(loopCtx, sub) })
	}
	a.spawn(func() { a.sweep(loopCtx) })
	if p, ok := a.proto.(streams); ok {
		if err := a.startStreams(ctx, loopCtx, p); err != nil {
			return err
		}
	}
	if rc, ok := a.proto.(roomChannels); ok {
		a.rooms = newRoomSubs(loopCtx, a, rc)
		a.spawn(a.rooms.run)
	}

	wait, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	if err := a.subs.waitReady(wait); err != nil {
		if last := a.subs.lastError(); last != nil {
			return fmt.Errorf("redisadapter: subscribe: %w", unreachable(last))
		}
		return fmt.Errorf("%w: subscriptions not confirmed: %w", ErrUnavailable, err)
	}
	return nil
}

// Back-off between attempts to subscribe again. rueidis does not retry
// for the adapter (open sets DisableRetry): its own back-off grows to a
// second and is not reset during an outage, so subscriptions came back up
// to a second after Redis did. A short, capped interval brings them back
// within it; an attempt against a Redis that is down costs a refused dial.
const minBackoff, maxBackoff = 10 * time.Millisecond, 50 * time.Millisecond

// refreshConnections sends a few PINGs on the path publishes take, during
// the settle delay after an outage. rueidis notices that an idle pipelined
// connection died only when it next uses it: without this, the first
// publishes after Redis came back could fail with EOF on a connection
// Redis closed during the outage, and be lost (seen with a restarted
// container). A PING that fails so is harmless, and rueidis replaces the
// connection; the PINGs pick the client's connections at random, so a
// handful reach every one.
func (a *Adapter) refreshConnections(ctx context.Context) {
	const pings = 16
	for range pings {
		for _, name := range a.opts.Namespaces {
			pctx, cancel := context.WithTimeout(ctx, settle)
			_ = a.client.Do(pctx, a.namespaces[name].proto.ping(a.client)).Error()
			cancel()
		}
	}
}

// receiveLoop keeps one subscription alive until ctx ends. Receive returns
// when the connection breaks (with an error), when the server unsubscribes
// the client (nil: a sharded channel's slot moved, a failover), or when ctx
// ends; the first two mean subscribing again, after a back-off. The first
// failure of an outage is logged as a warning; the tracker logs the
// recovery.
func (a *Adapter) receiveLoop(ctx context.Context, sub subscription) {
	hctx := rueidis.WithOnSubscriptionHook(ctx, a.subs.hook)
	backoff := minBackoff
	for {
		err := a.client.Receive(hctx, sub.build(), a.onMessage)
		if ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing) {
			return
		}
		switch {
		case !a.subs.down(sub.routes, err):
			a.log.Debug("subscribing again failed", "err", err)
		case err == nil:
			backoff = minBackoff
			a.log.Warn("redis ended a subscription; subscribing again", "channels", len(sub.routes))
		default:
			backoff = minBackoff
			a.log.Warn("subscription lost; subscribing again", "err", err)
		}
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// sleepCtx waits d, or until ctx ends: it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// subscriptionTracker knows which of the node's subscriptions are live: a
// channel is live from Redis's confirmation until its Receive returns. It
// counts confirmations after the first as resubscriptions, logs when every
// subscription is back after an outage, and keeps the last error, for
// New's.
type subscriptionTracker struct {
	log       *slog.Logger
	restoredF func() // called (on rueidis's reader goroutine: it must not block) when an outage ends
	counts    *counters
	mu        sync.Mutex
	want      int
	live      map[string]bool // channel or pattern -> confirmed and not lost since
	everLive  map[string]bool // confirmed at least once
	liveCount int
	allLive   chan struct{} // closed while every subscription is live
	upOnce    bool          // every subscription was live at least once
	downSince time.Time     // when the current outage began
	restored  time.Time     // when every subscription was live again after an outage
	lastErr   error
}

// settle is how long after its subscriptions are back a node waits before
// it publishes again: the other nodes renew theirs within maxBackoff of
// Redis answering, and a broadcast published before they have is lost to
// them.
const settle = maxBackoff

func newSubscriptionTracker(want int, c *counters, log *slog.Logger) *subscriptionTracker {
	return &subscriptionTracker{
		log: log, counts: c, want: want, live: make(map[string]bool), everLive: make(map[string]bool),
		allLive: make(chan struct{}),
	}
}

// hook sees every subscription confirmation.
func (t *subscriptionTracker) hook(s rueidis.PubSubSubscription) {
	if s.Kind != "subscribe" && s.Kind != "psubscribe" && s.Kind != "ssubscribe" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.everLive[s.Channel] {
		t.counts.resubscribes.Add(1)
	}
	t.everLive[s.Channel] = true
	if t.live[s.Channel] {
		return
	}
	t.live[s.Channel] = true
	t.liveCount++
	if t.liveCount < t.want {
		return
	}
	if t.upOnce {
		t.restored = time.Now() // after an outage: let the others catch up
		t.log.Info("subscriptions renewed", "down", t.restored.Sub(t.downSince).Round(time.Millisecond))
		if t.restoredF != nil {
			t.restoredF()
		}
	}
	t.upOnce = true
	close(t.allLive)
}

// down marks the channels of a subscription whose Receive returned, and
// reports whether any of them was live: the start of an outage, rather than
// another failed attempt.
func (t *subscriptionTracker) down(channels map[string]queueKind, err error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.lastErr = err
	}
	wasLive := false
	for ch := range channels {
		if !t.live[ch] {
			continue
		}
		if t.liveCount == t.want {
			t.allLive = make(chan struct{})
			t.downSince = time.Now()
		}
		t.live[ch] = false
		t.liveCount--
		wasLive = true
	}
	return wasLive
}

// isLive reports whether every subscription is live now.
func (t *subscriptionTracker) isLive() bool {
	_, _, live := t.state()
	return live
}

// ready reports whether the node may publish: every subscription is live,
// for at least settle when they came back from an outage.
func (t *subscriptionTracker) ready() bool {
	_, wait, live := t.state()
	return live && wait <= 0
}

func (t *subscriptionTracker) state() (allLive <-chan struct{}, settling time.Duration, live bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.allLive, settle - time.Since(t.restored), t.liveCount == t.want
}

// waitReady waits until ready, or ctx ends.
func (t *subscriptionTracker) waitReady(ctx context.Context) error {
	for {
		allLive, settling, live := t.state()
		if live && settling <= 0 {
			return nil
		}
		var wake <-chan time.Time
		if live { // settling; allLive is closed and would not wait
			allLive, wake = nil, time.After(settling)
		}
		select {
		case <-allLive:
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (t *subscriptionTracker) lastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

// routeOf returns where m goes: by its pattern or channel, or to the
// broadcasts of the namespace whose room channel it came on.
func (a *Adapter) routeOf(m rueidis.PubSubMessage) (route, bool) {
	key := m.Channel
	if m.Pattern != "" {
		key = m.Pattern
	}
	if r, ok := a.routes[key]; ok {
		return r, true
	}
	if ns, ok := a.roomRoutes.Load(m.Channel); ok {
		return route{ns: ns.(*namespace), queue: toBroadcasts}, true
	}
	return route{}, false
}

// onMessage runs on rueidis's reader goroutine: it only checks the size and
// routes the message to its queue, never blocking. A node reads its own
// broadcasts back (every node subscribes to the same channels); the ones
// the protocol recognises by their head go no further.
func (a *Adapter) onMessage(m rueidis.PubSubMessage) {
	a.stats.received.Add(1)
	if len(m.Message) > a.opts.MaxMessageSize {
		a.stats.malformed.Add(1)
		return
	}
	r, ok := a.routeOf(m)
	if !ok || r.queue == toBroadcasts && r.ns.proto.fromNode(m.Message) {
		return
	}
	a.route(r.queue, inbound{PubSubMessage: m, ns: r.ns})
}

// route puts in on queue q, or drops and counts it when q is full.
func (a *Adapter) route(q queueKind, in inbound) {
	ch := a.broadcasts
	switch q {
	case toRequests:
		ch = a.requests
	case toResponses:
		ch = a.responses
	}
	select {
	case ch <- in:
	default:
		a.stats.queueFull.Add(1)
	}
}

// goWorker runs handle for each message of q until the adapter closes.
func (a *Adapter) goWorker(q chan inbound, handle func(inbound)) {
	a.spawn(func() {
		for {
			select {
			case m := <-q:
				handle(m)
			case <-a.closing:
				return
			}
		}
	})
}

// handleBroadcast delivers a broadcast from another node to local sockets.
func (a *Adapter) handleBroadcast(in inbound) {
	m, ns := in.PubSubMessage, in.ns
	// As in Node: a room channel with no local member is not even decoded.
	if room := ns.proto.roomOf(m.Channel); room != "" && !a.hasLocalRoom(ns, room) {
		return
	}
	f, req, err := ns.proto.decodeBroadcast(m.Message)
	if err != nil {
		a.dropped(m, err)
		return
	}
	if req != nil {
		// The sharded protocols send requests on the broadcast channel.
		in.req = req
		a.route(toRequests, in)
		return
	}
	if f.uid == a.uid || f.nsp != ns.name {
		return
	}
	targets := a.selectLocal(ns, f.sel)
	if len(targets) == 0 {
		return // its arguments are not even decoded
	}
	args, err := f.arguments()
	if err != nil {
		a.dropped(m, err)
		return
	}
	a.deliverTo(ns, targets, f.event, args)
}

// dropped counts and logs a message that could not be decoded.
func (a *Adapter) dropped(m rueidis.PubSubMessage, err error) {
	a.stats.malformed.Add(1)
	a.log.Debug("dropped a message", "channel", m.Channel, "bytes", len(m.Message), "err", err)
}

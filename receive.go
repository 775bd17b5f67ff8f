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
	ns *namespace
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
		for _, sub := range a.proto.subscriptions(a.client, a.opts.Key, ns.name, a.uid) {
			for name, q := range sub.routes {
				a.routes[name] = route{ns: ns, queue: q}
			}
			subs = append(subs, sub)
		}
	}
	ready := newSubscriptionTracker(len(a.routes), &a.stats)
	for _, sub := range subs {
		a.spawn(func() { a.receiveLoop(loopCtx, ready, sub.build) })
	}
	if rc, ok := a.proto.(roomChannels); ok {
		a.spawn(newRoomSubs(loopCtx, a, rc).run)
	}

	wait, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	select {
	case <-ready.done:
		return nil
	case <-wait.Done():
		if err := ready.lastError(); err != nil {
			return fmt.Errorf("redisadapter: subscribe: %w", err)
		}
		return fmt.Errorf("redisadapter: subscriptions not confirmed: %w", wait.Err())
	}
}

// receiveLoop keeps one subscription alive until ctx ends. rueidis
// re-subscribes by itself after a dropped connection, but Receive returns
// nil when the server unsubscribes the client (a sharded channel's slot
// moved, a failover), and an error when it gives up: both mean subscribing
// again, after a back-off.
func (a *Adapter) receiveLoop(ctx context.Context, t *subscriptionTracker, build func() rueidis.Completed) {
	hctx := rueidis.WithOnSubscriptionHook(ctx, t.hook)
	const minBackoff, maxBackoff = 10 * time.Millisecond, time.Second
	backoff := minBackoff
	for {
		err := a.client.Receive(hctx, build(), a.onMessage)
		if ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing) {
			return
		}
		if err == nil {
			a.log.Warn("redis ended a subscription; subscribing again")
			backoff = minBackoff
		} else {
			t.failed(err)
			a.log.Warn("subscription failed; retrying", "err", err, "in", backoff)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// subscriptionTracker closes done once every subscription has been
// confirmed, counts later confirmations as resubscriptions, and keeps the
// last subscription error. A nil tracker does nothing.
type subscriptionTracker struct {
	mu      sync.Mutex
	want    int
	seen    map[string]bool
	done    chan struct{}
	counts  *counters
	lastErr error // why a subscription failed last, for New's error
}

func (t *subscriptionTracker) failed(err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
}

func (t *subscriptionTracker) lastError() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

func newSubscriptionTracker(want int, c *counters) *subscriptionTracker {
	return &subscriptionTracker{want: want, seen: make(map[string]bool), done: make(chan struct{}), counts: c}
}

// hook sees every subscription confirmation; a nil tracker ignores them.
func (t *subscriptionTracker) hook(s rueidis.PubSubSubscription) {
	if t == nil {
		return
	}
	if s.Kind != "subscribe" && s.Kind != "psubscribe" && s.Kind != "ssubscribe" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[s.Channel] {
		t.counts.resubscribes.Add(1)
		return
	}
	t.seen[s.Channel] = true
	if len(t.seen) == t.want {
		close(t.done)
	}
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
	if !ok || r.queue == toBroadcasts && a.proto.fromNode(m.Message, a.uid) {
		return
	}
	a.enqueueMessage(r, m)
}

func (a *Adapter) enqueueMessage(r route, m rueidis.PubSubMessage) {
	ch := a.broadcasts
	switch r.queue {
	case toRequests:
		ch = a.requests
	case toResponses:
		ch = a.responses
	}
	select {
	case ch <- inbound{PubSubMessage: m, ns: r.ns}:
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
	if room := a.proto.roomOf(a.opts.Key, ns.name, m.Channel); room != "" && !a.hasLocalRoom(ns, room) {
		return
	}
	f, err := a.proto.decodeBroadcast(m.Message)
	if errors.Is(err, errIsRequest) {
		// The sharded protocol sends requests on the broadcast channel.
		a.enqueueMessage(route{ns: ns, queue: toRequests}, m)
		return
	}
	if err != nil {
		a.dropped(m, err)
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

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

// start launches the workers and the subscription loops and waits until
// every subscription is confirmed.
func (a *Adapter) start(ctx context.Context) error {
	loopCtx, stop := context.WithCancel(context.Background())
	a.stop = stop

	a.goWorker(a.broadcasts, a.handleBroadcast)
	a.goWorker(a.requests, a.handleRequest)
	a.goWorker(a.responses, a.handleResponse)

	var patterns, chans []string
	for _, ns := range a.namespaces {
		patterns = append(patterns, ns.ch.pattern())
		chans = append(chans, ns.ch.request, ns.ch.response, ns.ch.responseTo(a.uid))
	}
	ready := newSubscriptionTracker(len(patterns)+len(chans), &a.stats)
	a.spawn(func() {
		a.receiveLoop(loopCtx, ready, func() rueidis.Completed {
			return a.client.B().Psubscribe().Pattern(patterns...).Build()
		})
	})
	a.spawn(func() {
		a.receiveLoop(loopCtx, ready, func() rueidis.Completed {
			return a.client.B().Subscribe().Channel(chans...).Build()
		})
	})

	wait, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	select {
	case <-ready.done:
		return nil
	case <-wait.Done():
		return fmt.Errorf("redisadapter: subscriptions not confirmed: %w", wait.Err())
	}
}

// receiveLoop keeps one subscription alive until the adapter closes. rueidis
// re-subscribes by itself after a dropped connection, but Receive returns
// nil when the server unsubscribes the client, and an error when it gives
// up: both mean subscribing again, after a back-off.
func (a *Adapter) receiveLoop(ctx context.Context, ready *subscriptionTracker, build func() rueidis.Completed) {
	hctx := rueidis.WithOnSubscriptionHook(ctx, ready.hook)
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
// confirmed, and counts later confirmations as resubscriptions.
type subscriptionTracker struct {
	mu     sync.Mutex
	want   int
	seen   map[string]bool
	done   chan struct{}
	counts *counters
}

func newSubscriptionTracker(want int, c *counters) *subscriptionTracker {
	return &subscriptionTracker{want: want, seen: make(map[string]bool), done: make(chan struct{}), counts: c}
}

func (t *subscriptionTracker) hook(s rueidis.PubSubSubscription) {
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

// onMessage runs on rueidis's reader goroutine: it only checks the size and
// routes the message to its queue, never blocking.
func (a *Adapter) onMessage(m rueidis.PubSubMessage) {
	a.stats.received.Add(1)
	if len(m.Message) > a.opts.MaxMessageSize {
		a.stats.malformed.Add(1)
		return
	}
	var q chan rueidis.PubSubMessage
	switch {
	case m.Pattern != "":
		q = a.broadcasts
	case a.byRequest[m.Channel] != nil:
		q = a.requests
	case a.byResponse[m.Channel] != nil:
		q = a.responses
	default:
		return
	}
	select {
	case q <- m:
	default:
		a.stats.queueFull.Add(1)
	}
}

// goWorker runs handle for each message of q until the adapter closes.
func (a *Adapter) goWorker(q chan rueidis.PubSubMessage, handle func(rueidis.PubSubMessage)) {
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
func (a *Adapter) handleBroadcast(m rueidis.PubSubMessage) {
	ns := a.byPattern[m.Pattern]
	if ns == nil {
		return
	}
	room, ok := ns.ch.roomOf(m.Channel)
	if !ok {
		return
	}
	// As in Node: a room channel with no local member is not even decoded.
	if room != "" && !a.hasLocalRoom(ns, room) {
		return
	}
	f, err := decodeBroadcast(m.Message)
	if err != nil {
		a.dropped(m, err)
		return
	}
	if f.uid == a.uid || f.nsp != ns.name {
		return
	}
	a.deliver(ns, f.sel, f.event, f.args)
}

// dropped counts and logs a message that could not be decoded.
func (a *Adapter) dropped(m rueidis.PubSubMessage, err error) {
	a.stats.malformed.Add(1)
	a.log.Debug("dropped a message", "channel", m.Channel, "bytes", len(m.Message), "err", err)
}

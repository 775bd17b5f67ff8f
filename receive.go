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
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// refreshConnections sends a few PINGs on the path publishes take, during
// the settle delay after an outage. rueidis notices that an idle pipelined
// connection died only when it next uses it: without this, the first
// publishes after Redis came back could fail with EOF on a connection
// Redis closed during the outage, and be lost (seen with a restarted
// container). A PING that fails so is harmless, and rueidis replaces the
// connection; the PINGs pick the client's connections at random, so a
// handful reach every one.
//
// After an outage that followed a failed probe it first closes the
// connections opened, and abandons the dials started, before the attempts
// that renewed the subscriptions began: they were dialed into the fault,
// and one dialed into a blackhole stays silent after it heals (a flow a
// NAT dropped stays dropped), holding whatever is sent on it (rueidis
// spreads the commands with a key, stream entries among them, over its
// pipelined connections). The prober closes such connections only while
// the subscriptions are down, and one dialed within renewalWait of the
// heal (or after the heal watch's dial that found it: heal.go) was left
// to finish: the publishes sent on it then waited for the
// next probe that took it, up to a second later. One that read since the
// attempts began is spared: it serves (the renewed subscriptions may ride
// a connection rueidis had opened before). The renewal proves the network
// is back; one of those that was silent only for lack of traffic costs a
// dial.
//
// Last, once the settle delay has passed since the subscriptions came back
// at restored (the other nodes' renewed theirs too, after an outage they
// all had), it sends the outage's gap notices (gaps.go).
func (a *Adapter) refreshConnections(ctx context.Context, restored time.Time, gaps []gap) {
	if since, ok := a.subs.takeRenewal(); ok {
		if n := a.conns.closeStale(since, since); n > 0 {
			a.log.Debug("subscriptions renewed: closed the connections dialed into the fault", "closed", n)
		}
	}
	const pings = 16
	for range pings {
		for _, name := range a.opts.Namespaces {
			pctx, cancel := context.WithTimeout(ctx, settle)
			_ = a.client.Do(pctx, a.namespaces[name].proto.ping(a.client)).Error()
			cancel()
		}
	}
	if len(gaps) > 0 && sleepCtx(ctx, settle-time.Since(restored)) {
		a.sendGaps(ctx, restored, gaps)
	}
}

// receiveLoop keeps one of the node's subscriptions alive until ctx ends.
func (a *Adapter) receiveLoop(ctx context.Context, sub subscription) {
	receive(ctx, a.loops, a.client, a.subs, sub, a.in.onMessage)
}

// receive keeps sub alive until ctx ends, telling subs which of its
// channels are live and handing each message to onMessage (on rueidis's
// reader goroutine: it must not block). Receive returns when the
// connection breaks (with an error), when the server unsubscribes the
// client (nil: a sharded channel's slot moved, a failover), or when ctx
// ends; the first two mean subscribing again.
func receive(ctx context.Context, loops supervisor, client rueidis.Client, subs *subscriptionTracker, sub subscription, onMessage func(rueidis.PubSubMessage)) {
	loops.run(ctx, loop{
		what:  "subscription",
		attrs: []any{"channels", len(sub.routes)},
		attempt: func(ctx context.Context, up func()) error {
			subs.attempting(sub.routes)
			hctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
				subs.hook(s)
				if subs.liveAll(sub.routes) {
					up()
				}
			})
			cmd := sub.build()
			// ErrClosing ends the loop only with ctx (the owner closes the
			// client after ending the loops): a Sentinel client closes the
			// old master's connections with it when it moves to the new
			// one, and the subscription must follow.
			err := client.Receive(hctx, cmd, onMessage)
			if ctx.Err() != nil {
				return nil
			}
			if refusal(err) {
				subs.refuse(cmd.Commands()[0], err)
			}
			subs.down(sub.routes, err)
			if err == nil {
				err = errUnsubscribed
			}
			return err
		},
	})
}

// errUnsubscribed: Redis ended a subscription the adapter did not end.
var errUnsubscribed = errors.New("redis ended the subscription")

// subscriptionTracker knows which of the node's subscriptions are live: a
// channel is live from Redis's confirmation until its Receive returns. It
// counts confirmations after the first as resubscriptions, notes when every
// subscription is back after an outage (see settle), and keeps the last
// error, for New's.
type subscriptionTracker struct {
	restoredF func()               // called under mu (on rueidis's reader goroutine: it must not block) when an outage ends
	lostF     func(channel string) // called under mu (on a loop's goroutine: it must not block) for each channel or pattern lost
	counts    *counters
	closed    <-chan struct{} // closed when the owner closes: waits end with ErrClosed
	mu        sync.Mutex
	want      int
	live      map[string]bool    // channel or pattern -> confirmed and not lost since
	kinds     map[string]subKind // channel or pattern -> its kind, for Stats
	everLive  map[string]bool    // confirmed at least once
	// shardSince: the shard channels (SSUBSCRIBE), and when each was
	// first confirmed (heldSince).
	shardSince map[string]time.Time
	liveCount  int
	allLive    chan struct{} // closed while every subscription is live
	upOnce     bool          // every subscription was live at least once
	restored   time.Time     // when every subscription was live again after an outage
	// ownFault: a failed probe found this node's own way to Redis
	// blackholed (noteProbeFailure); otherFault: one may have found Redis
	// silent for everyone. Both are cleared when the subscriptions are
	// back.
	ownFault, otherFault bool
	faultNoted           time.Time            // when the last of them was noted
	tried                map[string]time.Time // channel or pattern -> when its subscription was last tried
	// renewedAfterProbe: when the subscriptions came back from an outage
	// that followed a failed probe, the earliest start of the attempts
	// that renewed them (takeRenewal); zero: none to take.
	renewedAfterProbe time.Time
	lastErr           error
	refused           chan struct{} // closed when Redis refused a subscription before all were live once
	refusal           errRefused
}

// errRefused: Redis refused a subscription command for good (an ACL, a
// server without the command); waiting for it is pointless.
type errRefused struct {
	cmd string // PSUBSCRIBE, SUBSCRIBE, SSUBSCRIBE
	err error
}

// command reports whether the command itself was refused (an ACL without
// it, a server without it), not the user's access to its channels.
func (e errRefused) command() bool { return strings.Contains(e.err.Error(), "command") }

func (e errRefused) Error() string { return "Redis refused " + e.cmd + ": " + e.err.Error() }
func (e errRefused) Unwrap() error { return e.err }

// settle is how long after its subscriptions are back a node waits before
// it publishes again: the other nodes renew theirs within maxBackoff of
// Redis answering, and a broadcast published before they have is lost to
// them. It is not waited when the outage followed a failed probe that
// found the fault on this node's own way to Redis
// (subscriptionTracker.noteProbeFailure): the others did not lose theirs.
const settle = maxBackoff

// newSubscriptionTracker tracks want channels; closed, when it is closed,
// ends every wait with ErrClosed (the owner is closing: the subscriptions
// will not come back).
func newSubscriptionTracker(want int, c *counters, closed <-chan struct{}) *subscriptionTracker {
	return &subscriptionTracker{
		counts: c, closed: closed, want: want, live: make(map[string]bool), everLive: make(map[string]bool), kinds: make(map[string]subKind),
		shardSince: make(map[string]time.Time), tried: make(map[string]time.Time),
		allLive: make(chan struct{}), refused: make(chan struct{}),
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
	t.kinds[s.Channel] = kindOf(s.Kind)
	if _, ok := t.shardSince[s.Channel]; !ok && s.Kind == "ssubscribe" {
		t.shardSince[s.Channel] = time.Now()
	}
	t.liveCount++
	if t.liveCount < t.want {
		return
	}
	if t.upOnce {
		t.restored = time.Now() // after an outage: let the others catch up
		if t.ownFault && !t.otherFault {
			t.restored = t.restored.Add(-settle) // the others kept theirs
		}
		if t.ownFault || t.otherFault {
			t.renewedAfterProbe = time.Now()
			for _, at := range t.tried {
				if at.Before(t.renewedAfterProbe) {
					t.renewedAfterProbe = at
				}
			}
		}
		t.ownFault, t.otherFault = false, false
		if t.restoredF != nil {
			t.restoredF()
		}
	}
	t.upOnce = true
	close(t.allLive)
}

// down marks the channels of a subscription whose Receive returned.
func (t *subscriptionTracker) down(channels map[string]queueKind, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.lastErr = err
	}
	for ch := range channels {
		if !t.live[ch] {
			continue
		}
		if t.liveCount == t.want {
			t.allLive = make(chan struct{})
		}
		if t.lostF != nil {
			t.lostF(ch)
		}
		t.live[ch] = false
		t.liveCount--
	}
}

// noteProbeFailure notes why a delivery probe failed before the
// subscriptions are renewed: own when Redis kept delivering to this node
// what the others published while nothing this node sent reached it (a
// probe lost while the subscriptions kept reading, and the one published
// aside, on another connection, unanswered or read back first:
// errProbeLost.ownWay, a blackhole on this node's way to Redis). Redis
// served the others meanwhile, and their subscriptions were not renewed:
// the settle delay, which waits for them, is not needed when this
// outage's subscriptions come back. Any other failure in the same outage
// (a Redis silent for everyone, frozen or cut off, which the others'
// probes find too) keeps it. A probe back forgets them (forgetProbeFailures):
// a later outage is waited out as any.
func (t *subscriptionTracker) noteProbeFailure(own bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.faultNoted = time.Now()
	if own {
		t.ownFault = true
	} else {
		t.otherFault = true
	}
}

// attempting notes that the subscription to channels is tried now.
func (t *subscriptionTracker) attempting(channels map[string]queueKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for ch := range channels {
		t.tried[ch] = now
	}
}

// takeRenewal returns, once, the earliest start of the attempts that
// renewed the subscriptions after an outage that followed a failed probe
// (ok false: none since the last call).
func (t *subscriptionTracker) takeRenewal() (since time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	since, t.renewedAfterProbe = t.renewedAfterProbe, time.Time{}
	return since, !since.IsZero()
}

// forgetProbeFailures forgets what noteProbeFailure noted before since,
// when a probe sent then came back: each namespace has its prober, and
// one whose probe was under way when another's failed must not forget
// that failure.
func (t *subscriptionTracker) forgetProbeFailures(since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.faultNoted.Before(since) {
		t.ownFault, t.otherFault = false, false
	}
}

// refuse notes that Redis refused cmd: before every subscription was live
// once, it ends waitReady with the refusal.
func (t *subscriptionTracker) refuse(cmd string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.upOnce || t.refusal.err != nil {
		return
	}
	t.refusal = errRefused{cmd: cmd, err: err}
	close(t.refused)
}

// liveAll reports whether every one of channels is live.
func (t *subscriptionTracker) liveAll(channels map[string]queueKind) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range channels {
		if !t.live[ch] {
			return false
		}
	}
	return true
}

// heldSince reports whether ch is a shard channel of these subscriptions
// first confirmed before at (they are renewed when lost, never dropped).
func (t *subscriptionTracker) heldSince(ch string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	since, ok := t.shardSince[ch]
	return ok && since.Before(at)
}

// subKind is a kind of subscription, as Stats counts them.
type subKind uint8

const (
	subChannel      subKind = iota // SUBSCRIBE
	subPattern                     // PSUBSCRIBE
	subShardChannel                // SSUBSCRIBE
	subKinds
)

// kindOf is the kind of a (un)subscription push.
func kindOf(push string) subKind {
	switch push {
	case "psubscribe", "punsubscribe":
		return subPattern
	case "ssubscribe", "sunsubscribe":
		return subShardChannel
	}
	return subChannel
}

// held counts the live subscriptions by kind, into n.
func (t *subscriptionTracker) held(n *[subKinds]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch, live := range t.live {
		if live {
			n[t.kinds[ch]]++
		}
	}
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

// waitReady waits until ready, or ctx ends; it returns an errRefused when
// Redis refused a subscription before every one was live once.
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
		case <-t.refused:
			t.mu.Lock()
			defer t.mu.Unlock()
			return t.refusal
		case <-t.closed:
			return ErrClosed
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

// wasLive reports whether every subscription was live at least once.
func (t *subscriptionTracker) wasLive() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.upOnce
}

// answerSubs are an Emitter's subscriptions to the answers to its
// requests: one per namespace, started by the first request in it and
// kept until close, each supervised as a node's subscriptions are. What
// they read goes through a bounded queue to one worker, which hands it to
// the requester: the reader never waits, so Redis is read at full speed
// (in classic mode the shared response channel carries every Node.js
// server's answers to every requester).
type answerSubs struct {
	client  rueidis.Client
	proto   protocol // bound to the requester's uid
	req     *requester
	loops   supervisor
	maxSize int // Options.MaxMessageSize
	log     *slog.Logger
	stats   *counters
	queue   chan answerIn

	mu     sync.Mutex
	ns     map[string]*answerSub // by namespace
	closed bool
	ctx    context.Context // ends at close: the loops and the worker stop
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

// answerSub is the answer subscription of one namespace.
type answerSub struct {
	proto nsProtocol
	subs  *subscriptionTracker
}

// answerIn is an answer read, with the namespace it came for.
type answerIn struct {
	proto nsProtocol
	msg   string
}

func newAnswerSubs(client rueidis.Client, proto protocol, req *requester, o Options, log *slog.Logger, stats *counters) *answerSubs {
	s := &answerSubs{
		client: client, proto: proto, req: req, maxSize: o.MaxMessageSize, log: log, stats: stats,
		loops: supervisor{log: log, outages: &stats.outages},
		queue: make(chan answerIn, o.ReceiveQueue), ns: make(map[string]*answerSub),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s
}

// of returns namespace nsp's answer subscription, starting it (and, the
// first time, the worker) when it has none; ErrClosed after close. The
// subscription may not be confirmed yet: wait with its tracker.
func (s *answerSubs) of(nsp string) (*answerSub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if a := s.ns[nsp]; a != nil {
		return a, nil
	}
	p := s.proto.namespace(nsp)
	sub := p.answers(s.client)
	a := &answerSub{proto: p, subs: newSubscriptionTracker(len(sub.routes), s.stats, s.ctx.Done())}
	if len(s.ns) == 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.work()
		}()
	}
	s.ns[nsp] = a
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		receive(s.ctx, s.loops, s.client, a.subs, sub, func(m rueidis.PubSubMessage) { s.onMessage(p, m) })
	}()
	return a, nil
}

// onMessage runs on rueidis's reader goroutine: it queues m, or drops and
// counts it when it is too large or the queue is full.
func (s *answerSubs) onMessage(p nsProtocol, m rueidis.PubSubMessage) {
	s.stats.received.Add(1)
	if len(m.Message) > s.maxSize {
		s.stats.malformed.Add(1)
		return
	}
	select {
	case s.queue <- answerIn{proto: p, msg: m.Message}:
	default:
		s.stats.queueFull.Add(1)
	}
}

// work hands each queued answer to the requester until close.
func (s *answerSubs) work() {
	for {
		select {
		case in := <-s.queue:
			if err := s.req.handleAnswer(in.proto, in.msg); err != nil {
				s.stats.malformed.Add(1)
				s.log.Debug("dropped an answer", "bytes", len(in.msg), "err", err)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// held counts the answer subscriptions live now, by kind, into n.
func (s *answerSubs) held(n *[subKinds]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.ns {
		a.subs.held(n)
	}
}

// close stops every subscription and the worker, and waits for them; the
// subscriptions end with their connections when the client closes.
func (s *answerSubs) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

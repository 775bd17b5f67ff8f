package redisadapter

// The publishing side, shared by Adapter and Emitter: every frame that goes
// out to Redis is built and sent here.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// publisher sends every message through one ordered queue, drained by one
// goroutine that sends everything waiting as one pipeline (rueidis
// DoMulti) and waits for Redis's answers before the next: consecutive
// publishes, from one goroutine or many, leave in batches instead of one
// round trip each, and leave in the order they were queued. A lone publish
// on an idle queue leaves at once: nothing waits for a batch to fill.
type publisher struct {
	client rueidis.Client
	// gate, when set, may refuse a publish to the fleet before it is
	// queued: the Adapter's does while its subscriptions are down. A
	// durable message is not asked: it waits in Redis for every reader.
	gate func() error
	// heldSince, when set, reports whether this node has held a
	// subscription to a shard channel since before a time: a SPUBLISH on it
	// sent after then that the server answers no subscriber of its own
	// received, not even this node's, is counted failed (errReachedNobody).
	heldSince func(channel string, at time.Time) bool
	opts      Options
	uid       string
	log       *slog.Logger
	// inFlight is the encoded size of the batch being sent (0: none), for
	// the delivery probe (probeAside.behind).
	inFlight atomic.Int64
	// window is when the window after this node's last outage ends
	// (sinceStart; 0: none yet), for checkReach.
	window    atomic.Int64
	published atomic.Uint64
	failures  atomic.Uint64
	resent    atomic.Uint64
	lastLog   atomic.Int64 // unix nanoseconds of the last failure logged
	// ctx ends when the owner gives up on what is queued (abort): resends
	// stop waiting.
	ctx   context.Context
	abort context.CancelFunc

	mu         sync.Mutex
	queue      []outgoing
	array      []outgoing    // the queue's own array, which it starts from again whenever it empties
	bytes      int           // encoded bytes queued or in flight
	wake       chan struct{} // one token: the queue has work
	space      chan struct{} // made by a caller waiting for room, closed (and forgotten) when a batch frees some
	closed     bool          // Close has begun: nothing more is queued
	down       bool          // the last batch did not reach Redis: a pub/sub publish waits for its answer
	unreported error         // the first failure no caller has heard of, for Flush and Close
	stopped    chan struct{} // closed when the sender has sent what was queued and stopped
	producer   string        // names this publisher in the numbers of its durable messages
	seq        uint64        // the number of the last durable message built; the sender's alone
	sent       []*outgoing   // the sender's, reused from batch to batch
}

// outgoing is one queued message, or a Flush marker, held in the queue by
// value: a message nobody waits for costs the queue no allocation. Its
// command is built by the sender: rueidis recycles a sent command into a
// pool, so built and recycled on one goroutine, a batch's commands come
// from the pool instead of being allocated. A durable message is
// numbered in sending order, and sent again after a failure that may have
// left it out of Redis, until Redis has it (resend.go).
type outgoing struct {
	ns       nsProtocol // the protocol, which builds the command
	msg      message
	cmd      rueidis.Completed
	size     int
	flush    bool
	internal bool    // an answer to another node: its failure is logged, not reported to Flush
	w        *waiter // nil: nobody waits for the answer
}

// waiter is the caller waiting for a message's answer (or a Flush's).
type waiter struct {
	done chan error
	// state: queued, then taken by the sender and answered, unless the
	// waiter's deadline comes first (abandoned). A message abandoned while
	// queued is not sent; an abandoned Flush marker leaves its failure for
	// the next Flush.
	state atomic.Int32
}

func newWaiter() *waiter { return &waiter{done: make(chan error, 1)} }

const (
	queued int32 = iota
	taken
	answered
	abandoned
)

// giveUp is a waiter's deadline: it reports whether the sender had not
// answered yet (the answer is then never read); if it had, the answer is in
// done.
func (w *waiter) giveUp() bool {
	return w.state.CompareAndSwap(queued, abandoned) || w.state.CompareAndSwap(taken, abandoned)
}

// answer gives err to the waiter unless it gave up.
func (w *waiter) answer(err error) {
	if w.state.CompareAndSwap(taken, answered) {
		w.done <- err
	}
}

// maxBatch bounds the commands of one pipeline, and so the wait of the
// messages queued behind it.
const maxBatch = 1024

// newPublisher starts the sender; closeNow stops it once the queue is sent.
func newPublisher(client rueidis.Client, o Options, uid string, log *slog.Logger, gate func() error, heldSince func(string, time.Time) bool) *publisher {
	p := &publisher{
		client: client, gate: gate, heldSince: heldSince, opts: o, uid: uid, log: log, producer: randomID(12),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}), array: make([]outgoing, 0, 64),
	}
	p.queue = p.array
	p.ctx, p.abort = context.WithCancel(context.Background())
	go p.send()
	return p
}

// publish queues m, encoded by ns, and returns once it is queued: it does
// not wait for Redis (see Adapter.Flush). It fails with ErrMessageTooLarge,
// with ErrClosed after Close, and with ErrPublish when the queue stays full
// (Options.PublishQueue) until ctx ends or RequestTimeout passes. When the
// last batch did not reach Redis it waits for this message's answer instead
// of queueing blindly, so that an outage reaches the caller; a stream entry
// does not wait: it is sent again until Redis takes it, and the queue it
// joins bounds how many wait for that. The gate is asked first.
func (p *publisher) publish(ctx context.Context, ns nsProtocol, m message) error {
	if p.gate != nil && !m.durable {
		if err := p.gate(); err != nil {
			return err
		}
	}
	return p.queueMessage(ctx, ns, m, p.isDown() && !m.durable, false)
}

func (p *publisher) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// duringOutage marks err, a wait that ran out, with ErrUnavailable when the
// last batch did not reach Redis: that is why nothing came.
func (p *publisher) duringOutage(err error) error {
	if p.isDown() {
		return errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// publishWait queues m and waits for Redis's answer, up to ctx and
// RequestTimeout. A message whose wait ended before the sender took it is
// not sent; one already taken may still reach Redis.
func (p *publisher) publishWait(ctx context.Context, ns nsProtocol, m message) error {
	return p.queueMessage(ctx, ns, m, true, false)
}

// publishAnswer queues an answer to another node's request: never waited
// for, its failure logged and counted but not reported to Flush, which
// reports the caller's own messages.
func (p *publisher) publishAnswer(ctx context.Context, ns nsProtocol, m message) error {
	return p.queueMessage(ctx, ns, m, false, true)
}

// checkSize fails with ErrMessageTooLarge for a payload past
// Options.MaxMessageSize, which receivers drop.
func (p *publisher) checkSize(payload []byte) error {
	if len(payload) > p.opts.MaxMessageSize {
		return errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), p.opts.MaxMessageSize)
	}
	return nil
}

func (p *publisher) queueMessage(ctx context.Context, ns nsProtocol, m message, wait, internal bool) error {
	if err := p.checkSize(m.payload); err != nil {
		return err
	}
	// The deadline is armed only if the message has to wait: a timer per
	// Emit would cost the queued path about half its time.
	deadline := time.Now().Add(p.opts.RequestTimeout)
	o := outgoing{ns: ns, msg: m, size: len(m.payload), internal: internal}
	if wait {
		o.w = newWaiter()
	}
	channel := m.channel
	if err := p.put(ctx, deadline, o); err != nil {
		return err
	}
	if !wait {
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	select {
	case err := <-o.w.done:
		if err != nil {
			return errorf("%w: %s: %w", ErrPublish, channel, unreachable(err))
		}
		return nil
	case <-ctx.Done():
		if o.w.giveUp() {
			return errorf("%w: %s: no answer from Redis (sent only if it had left already): %w", ErrPublish, channel, p.duringOutage(ctx.Err()))
		}
		if err := <-o.w.done; err != nil {
			return errorf("%w: %s: %w", ErrPublish, channel, unreachable(err))
		}
		return nil
	}
}

// put appends o to the queue, waiting for room, up to ctx and deadline,
// while it is full: the queued and in-flight bytes are bounded by
// PublishQueue, or one message when that is larger. Flush markers take no
// room and never wait (their deadline is zero).
func (p *publisher) put(ctx context.Context, deadline time.Time, o outgoing) error {
	armed := deadline.IsZero()
	p.mu.Lock()
	for !p.closed && o.size > 0 && p.bytes > 0 && p.bytes+o.size > p.opts.PublishQueue {
		if p.space == nil {
			p.space = make(chan struct{})
		}
		space := p.space
		p.mu.Unlock()
		if !armed {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			armed = true
		}
		select {
		case <-space:
		case <-ctx.Done():
			return errorf("%w: publish queue full (%d bytes): %w", ErrPublish, p.opts.PublishQueue, p.duringOutage(ctx.Err()))
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.queue = append(p.queue, o)
	p.bytes += o.size
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // the sender already has a token
	}
	return nil
}

// flush waits until Redis has answered every message queued before the
// call; see Adapter.Flush.
func (p *publisher) flush(ctx context.Context) error {
	w := newWaiter()
	if err := p.put(ctx, time.Time{}, outgoing{flush: true, w: w}); err != nil {
		return err
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		if w.giveUp() {
			return errorf("flush: %w", ctx.Err())
		}
		return <-w.done
	}
}

// send drains the queue until the publisher is closed and the queue empty.
func (p *publisher) send() {
	defer close(p.stopped)
	for {
		p.mu.Lock()
		batch := p.queue
		if len(batch) > maxBatch {
			batch = batch[:maxBatch]
		}
		if len(batch) == 0 {
			closed := p.closed
			p.queue = p.array[:0] // its batches are sent: a lone publish costs no allocation
			p.mu.Unlock()
			if closed {
				return
			}
			<-p.wake
			continue
		}
		p.queue = p.queue[len(batch):]
		p.mu.Unlock()
		p.sendBatch(batch)
		p.mu.Lock()
		for _, o := range batch {
			p.bytes -= o.size
		}
		p.freeSpace()
		p.mu.Unlock()
		clear(batch) // the queue's array: it would hold the payloads until overwritten
	}
}

// freeSpace wakes the callers waiting for room; p.mu is held.
func (p *publisher) freeSpace() {
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
}

// sendBatch sends the messages of batch as one pipeline, in order, and
// hands each answer to whoever waits for it; a Flush marker gets the first
// failure no caller has heard of.
func (p *publisher) sendBatch(batch []outgoing) {
	// A new slice each time: rueidis may still read it after DoMulti
	// returned at its deadline.
	cmds := make([]rueidis.Completed, 0, len(batch))
	sent := p.sent[:0]
	defer func() {
		clear(sent)
		p.sent = sent[:0]
	}()
	size := 0 // the encoded bytes sent (inFlight)
	for i := range batch {
		o := &batch[i]
		if o.w != nil && !o.w.state.CompareAndSwap(queued, taken) {
			continue // its waiter gave up: not sent, not answered
		}
		switch {
		case o.flush:
		case o.msg.durable:
			p.seq++
			// Pinned: rueidis recycles a command once sent, and a resend needs it.
			o.cmd = o.ns.command(p.client.B(), o.msg, seqNo{p.producer, p.seq}).Pin()
		default:
			o.cmd = o.ns.command(p.client.B(), o.msg, seqNo{})
		}
		if !o.flush {
			cmds = append(cmds, o.cmd)
			size += o.size
		}
		sent = append(sent, o)
	}
	var results []rueidis.RedisResult
	sentAt := time.Now()
	if len(cmds) > 0 {
		p.inFlight.Store(int64(size))
		results = p.do(cmds)
		p.inFlight.Store(0)
		p.resend(sent, results)
		// The outage state is recorded before any waiter hears its answer: a
		// Flush that reports this batch's failure must find the next Emit
		// waiting for its own answer.
		reached := false
		for _, r := range results {
			if err := r.Error(); err == nil {
				reached = true
			} else if _, answered := rueidis.IsRedisErr(err); answered {
				reached = true // Redis answered, even if to refuse
			}
		}
		p.mu.Lock()
		p.down = !reached
		p.mu.Unlock()
	}
	var failed error
	i := 0
	at := sinceStart(sentAt)
	for _, o := range sent {
		if o.flush {
			p.mu.Lock()
			if o.w.state.CompareAndSwap(taken, answered) {
				o.w.done <- p.unreported
				p.unreported = nil
			}
			p.mu.Unlock()
			continue
		}
		err := results[i].Error()
		if err == nil && !o.msg.durable {
			err = p.checkReach(o.msg, results[i], sentAt, at)
		}
		i++
		if err == nil {
			p.published.Add(1)
			if o.msg.sent != nil {
				o.msg.sent.record(at)
			}
		} else {
			p.failures.Add(1)
			if failed == nil {
				failed = err
			}
		}
		if o.w != nil {
			o.w.answer(err) // unless it gave up with an error of its own
			continue
		}
		if err != nil && !o.internal {
			p.mu.Lock()
			if p.unreported == nil {
				p.unreported = errorf("%w: %w", ErrPublish, unreachable(err))
			}
			p.mu.Unlock()
		}
	}
	if failed != nil {
		p.logFailure(failed)
	}
}

// errReachedNobody: the server that took a SPUBLISH delivered it to none of
// its subscribers, though this node subscribed to the channel before it was
// sent. The subscriptions were being renewed, or the server is not the
// channel's master any more: a master demoted while it was frozen executes,
// once it thaws, what it had received, before it hears of the failover.
// Most such broadcasts reach nobody; some reach the subscribers of the
// promoted replica through the cluster bus, which the answer does not
// count: a failure counted so may have been delivered. Also a broadcast
// every node reads that reached nobody after others read the last ones
// (PUBLISH in classic mode too): Redis cut every subscriber off, and took
// it before this node noticed its own were gone.
var errReachedNobody = errors.New("no subscriber on the server that took it received it, not even this node's own (subscriptions being renewed, or in sharded mode a server that is no longer the channel's master)")

// errReachedFewer: a broadcast published within afterOutage of this
// node's subscriptions coming back from an outage reached fewer
// subscribers than the last one before the outage (the answer to a PUBLISH
// or SPUBLISH counts them, this node's own included): the others'
// subscriptions were probably still being renewed. It may have reached
// some of them.
var errReachedFewer = errors.New("reached fewer subscribers than before this node's outage, probably the others' subscriptions still being renewed (it may have reached some)")

// afterOutage is how long at least, after this node's subscriptions came
// back from an outage, a broadcast reaching fewer subscribers than before
// it counts failed (errReachedFewer), unless the count is back before: the
// others renew theirs within maxBackoff of Redis answering, or within a
// probe's detection (ProbeInterval + ProbeTimeout, 1.2 s by default) when
// they noticed later; twice that when it is longer (publisher.outageSpan).
// A node that left for good during the outage makes the broadcasts of its
// audience count failed until it ends.
const afterOutage = 3 * time.Second

// audience is what the publisher knows of the subscribers of a kind of
// broadcast that every node of the fleet reads (a namespace's broadcasts
// in classic mode, its channel in sharded mode): how many the answer to
// the last one counted, and after an outage, how many it counted before.
// The protocol bound to a namespace holds it; only the publisher's sender
// reads and writes it. Times are monotonic (sinceStart).
type audience struct {
	last   int64 // the count noted (see reachedFewer)
	lastAt int64 // when the broadcast that counted last was sent
	seen   int64 // when the last broadcast was sent, whatever it counted
	// lowerSince: when a count lower than last was first seen since (0:
	// none); it becomes last once it held for the hold reachedFewer is given.
	lowerSince int64
	window     int64 // the end of the window before applies to
	before     int64 // last, when the window began; 0 once the count came back, or when last was too old
}

// countKept is how long before an outage ended a count still stands for
// the fleet: a node that published nothing for longer compares nothing
// after the outage (nodes may have left since, unseen).
const countKept = time.Minute

// reachedFewer reports whether a broadcast sent at that reached n
// subscribers reached fewer than before this node's last outage, whose
// window of span ends at end (0: none yet). Within the window the count
// noted before it is compared with, until a broadcast reaches as many.
// Outside, or once it is back, the count is noted: a higher one at once, a
// lower one once it held for hold (the broadcasts in between lower, none
// sent more than hold apart), so that the broadcasts answered while the
// outage began (this node's own subscriptions going, unnoticed yet) do
// not lower it.
func (a *audience) reachedFewer(n, at, end, span, hold int64) bool {
	if end != 0 && at <= end {
		if a.window != end { // the first broadcast of this audience since the outage
			a.window, a.before, a.lowerSince = end, a.last, 0
			if a.lastAt < end-span-int64(countKept) {
				a.before = 0
			}
		}
		if a.before != 0 {
			if n < a.before {
				return true
			}
			a.before = 0 // back: a node leaving later counts nothing
		}
	}
	switch {
	case n >= a.last:
		a.last, a.lastAt, a.lowerSince = n, at, 0
	case a.lowerSince == 0 || at-a.seen > hold:
		a.lowerSince = at
	case at-a.lowerSince >= hold:
		a.last, a.lastAt, a.lowerSince = n, at, 0
	}
	a.seen = at
	return false
}

// reachedNobody reports whether a broadcast sent at that reached n
// subscribers reached none, not even this node's own, where others read
// the last ones, within countKept (a node left alone since published to
// nobody else, rightly).
func (a *audience) reachedNobody(n, at int64) bool {
	return n == 0 && a.last > 1 && at-a.lastAt <= int64(countKept)
}

// outageSpan is how long the window after an outage lasts: afterOutage,
// or twice a probe's detection when that is longer.
func (p *publisher) outageSpan() time.Duration {
	return max(afterOutage, 2*(p.opts.ProbeInterval+p.opts.ProbeTimeout))
}

// outageEnded opens the window after an outage (outageSpan): called when
// this node's subscriptions came back.
func (p *publisher) outageEnded(at time.Time) {
	p.window.Store(sinceStart(at.Add(p.outageSpan())))
}

// checkReach fails a pub/sub publish Redis took that reached fewer
// subscribers than it should have: none, not even this node's own, when
// this node held the shard channel before sentAt (sharded mode), or when
// the broadcast is one every node reads and others read the last ones
// (errReachedNobody: this node's subscriptions were going, and the
// others' too; no node received it); and after an outage, fewer than
// before it (errReachedFewer). A lower count is taken as the fleet's once
// it held for a probe's cycle (ProbeInterval + ProbeTimeout), how long a
// node may take to notice it lost its subscriptions. An Emitter's
// publisher (no heldSince: its node reads nothing) compares nothing.
// Outside a window, it costs an atomic load and the audience's few
// comparisons. at is sentAt as sinceStart gives it.
func (p *publisher) checkReach(m message, r rueidis.RedisResult, sentAt time.Time, at int64) error {
	n, err := r.AsInt64()
	switch {
	case err != nil || p.heldSince == nil:
		return nil
	case n == 0 && p.heldSince(m.channel, sentAt):
		return errReachedNobody
	case m.audience == nil:
		return nil
	}
	switch {
	case m.audience.reachedFewer(n, at, p.window.Load(), int64(p.outageSpan()), int64(p.opts.ProbeInterval+p.opts.ProbeTimeout)):
		return errReachedFewer
	case m.audience.reachedNobody(n, at):
		return errReachedNobody
	}
	return nil
}

// processStart is when the process started, for sinceStart.
var processStart = time.Now()

// sinceStart is t on the monotonic clock, in nanoseconds since
// processStart: a time compared with others that a step of the wall clock
// must not move.
func sinceStart(t time.Time) int64 { return int64(t.Sub(processStart)) }

// do sends cmds as one pipeline, within RequestTimeout.
func (p *publisher) do(cmds []rueidis.Completed) []rueidis.RedisResult {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.RequestTimeout)
	defer cancel()
	return p.client.DoMulti(ctx, cmds...)
}

// logFailure logs a failed publish, once a second at most: the count is in
// Stats.PublishFailures.
func (p *publisher) logFailure(err error) {
	if p.logNow() {
		p.log.Warn("publish failed", "err", err, "failures", p.failures.Load())
	}
}

// logResend logs that n stream entries are sent again, nothing lost so
// far, once a second at most (sharing logFailure's second): the count is
// in Stats.Resent.
func (p *publisher) logResend(err error, n int) {
	if p.logNow() {
		p.log.Warn("stream entries not confirmed by Redis; sending them again (nothing lost so far)", "err", err, "entries", n, "resent", p.resent.Load())
	}
}

// logNow reports whether a second passed since the last line it allowed.
func (p *publisher) logNow() bool {
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	return now-last >= int64(time.Second) && p.lastLog.CompareAndSwap(last, now)
}

// takeUnreported returns, and forgets, the first failure of a queued
// message no caller has heard of: what Close reports once the queue is sent.
func (p *publisher) takeUnreported() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.unreported
	p.unreported = nil
	return err
}

// closeNow stops queueing and returns a channel closed once the sender has
// sent (or failed) what is queued and stopped.
func (p *publisher) closeNow() <-chan struct{} {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.freeSpace() // wakes callers waiting for room: they get ErrClosed
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.stopped
}

// encodeRequest encodes a request in the protocol's form, within
// Options.MaxMessageSize.
func (p *publisher) encodeRequest(proto nsProtocol, req request) (message, error) {
	m, err := proto.encodeRequest(req)
	if err != nil {
		return message{}, errorf("encode %s: %w", req.typ, err)
	}
	return m, p.checkSize(m.payload)
}

package redisadapter

// The publishing side, shared by Adapter and Emitter: every frame that goes
// out to Redis is built and sent here.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// open applies opts' defaults, checks them and opens the Redis client c
// describes: what New and NewEmitter share.
func open(c Connector, opts *Options) (Options, rueidis.Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := o.validate(); err != nil {
		return o, nil, err
	}
	copt, err := c.clientOption()
	if err != nil {
		return o, nil, err
	}
	copt.DisableCache = true // pub/sub only: no client-side caching, no tracking
	// The adapter does its own retrying: a subscription that rueidis renews
	// by itself is down without the adapter knowing (and comes back on
	// rueidis's back-off, up to a second after Redis does); a request fails
	// at once rather than after retries that outlast the outage.
	copt.DisableRetry = true
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return o, nil, fmt.Errorf("redisadapter: connect to redis: %w", err)
	}
	return o, client, nil
}

// publisher sends every message through one ordered queue, drained by one
// goroutine that sends everything waiting as one pipeline (rueidis
// DoMulti) and waits for Redis's answers before the next: consecutive
// publishes, from one goroutine or many, leave in batches instead of one
// round trip each, and leave in the order they were queued. A lone publish
// on an idle queue leaves at once: nothing waits for a batch to fill.
type publisher struct {
	client    rueidis.Client
	proto     protocol
	opts      Options
	uid       string
	log       *slog.Logger
	published atomic.Uint64
	failures  atomic.Uint64
	lastLog   atomic.Int64 // unix nanoseconds of the last failure logged

	mu      sync.Mutex
	queue   []outgoing
	bytes   int           // encoded bytes queued
	wake    chan struct{} // one token: the queue has work
	space   chan struct{} // closed, and replaced, when a batch frees room
	closed  bool          // Close has begun: nothing more is queued
	down    bool          // the last batch failed to reach Redis: publish waits for its answer
	flushed error         // the first failure since the last Flush returned
	stopped chan struct{} // closed when the sender has sent what was queued and stopped
}

// outgoing is one queued message, or (cmd unset) a Flush marker.
type outgoing struct {
	cmd   rueidis.Completed
	size  int
	flush bool
	done  chan error // nil: nobody waits for the answer
}

// maxBatch bounds the commands of one pipeline, and so the wait of the
// messages queued behind it.
const maxBatch = 1024

func newPublisher(client rueidis.Client, proto protocol, o Options, uid string) *publisher {
	p := &publisher{
		client: client, proto: proto, opts: o, uid: uid, log: o.Logger.With("adapter", "redisadapter"),
		wake: make(chan struct{}, 1), space: make(chan struct{}), stopped: make(chan struct{}),
	}
	go p.send()
	return p
}

// publish queues payload for channel and returns once it is queued: it does
// not wait for Redis (see Flush). It fails with ErrMessageTooLarge, with
// ErrClosed after Close, and with ErrPublish when the queue stays full
// (Options.PublishQueue) until ctx ends or RequestTimeout passes, or when
// the last attempt to reach Redis failed: then it waits for this message's
// answer instead of queueing blindly, so that an outage is reported to the
// caller rather than counted.
func (p *publisher) publish(ctx context.Context, channel string, payload []byte) error {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	return p.enqueue(ctx, channel, payload, down)
}

// publishWait queues payload and waits for Redis's answer.
func (p *publisher) publishWait(ctx context.Context, channel string, payload []byte) error {
	return p.enqueue(ctx, channel, payload, true)
}

func (p *publisher) enqueue(ctx context.Context, channel string, payload []byte, wait bool) error {
	if len(payload) > p.opts.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), p.opts.MaxMessageSize)
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.RequestTimeout)
	defer cancel()
	o := outgoing{cmd: p.proto.publish(p.client, channel, payload), size: len(payload)}
	if wait {
		o.done = make(chan error, 1)
	}
	if err := p.put(ctx, o); err != nil {
		return err
	}
	if !wait {
		return nil
	}
	select {
	case err := <-o.done:
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPublish, channel, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrPublish, channel, ctx.Err())
	}
}

// put appends o to the queue, waiting for room while it is full.
func (p *publisher) put(ctx context.Context, o outgoing) error {
	p.mu.Lock()
	for !p.closed && len(p.queue) > 0 && p.bytes+o.size > p.opts.PublishQueue {
		space := p.space
		p.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("%w: publish queue full (%d bytes): %w", ErrPublish, p.opts.PublishQueue, ctx.Err())
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
	o := outgoing{flush: true, done: make(chan error, 1)}
	if err := p.put(ctx, o); err != nil {
		return err
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("redisadapter: flush: %w", ctx.Err())
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
			p.queue = p.queue[:0]
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
		close(p.space)
		p.space = make(chan struct{})
		p.mu.Unlock()
	}
}

// sendBatch sends the messages of batch as one pipeline and hands each
// answer to whoever waits for it.
func (p *publisher) sendBatch(batch []outgoing) {
	cmds := make([]rueidis.Completed, 0, len(batch))
	for _, o := range batch {
		if !o.flush {
			cmds = append(cmds, o.cmd)
		}
	}
	var results []rueidis.RedisResult
	if len(cmds) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.RequestTimeout)
		results = p.client.DoMulti(ctx, cmds...)
		cancel()
	}
	var failed error
	reached := len(cmds) == 0
	i := 0
	for _, o := range batch {
		if o.flush {
			p.mu.Lock()
			err := p.flushed
			p.flushed = nil
			p.mu.Unlock()
			o.done <- err
			continue
		}
		err := results[i].Error()
		i++
		if _, answered := rueidis.IsRedisErr(err); err == nil || answered {
			reached = true // Redis answered, even if to refuse
		}
		if err == nil {
			p.published.Add(1)
		} else {
			p.failures.Add(1)
			if failed == nil {
				failed = err
			}
			p.mu.Lock()
			if p.flushed == nil {
				p.flushed = fmt.Errorf("%w: %w", ErrPublish, err)
			}
			p.mu.Unlock()
		}
		if o.done != nil {
			o.done <- err
		}
	}
	p.mu.Lock()
	p.down = !reached
	p.mu.Unlock()
	if failed != nil {
		p.logFailure(failed)
	}
}

// logFailure logs a failed publish, once a second at most: the count is in
// Stats.PublishFailures.
func (p *publisher) logFailure(err error) {
	now := time.Now().UnixNano()
	last := p.lastLog.Load()
	if now-last < int64(time.Second) || !p.lastLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("publish failed", "err", err, "failures", p.failures.Load())
}

// close stops queueing, lets the sender send what is queued until ctx
// ends, and reports whether it finished.
func (p *publisher) close(ctx context.Context) error {
	select {
	case <-p.closeNow():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeNow stops queueing and returns a channel closed once the sender has
// sent (or failed) what is queued and stopped.
func (p *publisher) closeNow() <-chan struct{} {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.space) // wakes callers waiting for room: they get ErrClosed
		p.space = make(chan struct{})
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.stopped
}

// publishRemote publishes a join (typ typeRemoteJoin), leave or disconnect
// of the sockets sel matches, for every node to apply.
func (p *publisher) publishRemote(ctx context.Context, nsp string, typ requestType, sel selector, rooms []string, closeConn bool) error {
	sel = sel.wire()
	req := request{UID: p.uid, Type: typ, Opts: &sel, Rooms: rooms}
	if typ == typeRemoteDisconnect {
		req.Close = &closeConn
	}
	return p.publishRequest(ctx, nsp, req)
}

// publishRequest publishes a request in the protocol's form.
func (p *publisher) publishRequest(ctx context.Context, nsp string, req request) error {
	channel, payload, err := p.proto.encodeRequest(p.opts.Key, nsp, req)
	if err != nil {
		return fmt.Errorf("redisadapter: encode %s: %w", req.Type, err)
	}
	return p.publish(ctx, channel, payload)
}

// publishRequestWait publishes a request and waits for Redis to take it:
// the requester then waits for answers, which a lost request never brings.
func (p *publisher) publishRequestWait(ctx context.Context, nsp string, req request) error {
	channel, payload, err := p.proto.encodeRequest(p.opts.Key, nsp, req)
	if err != nil {
		return fmt.Errorf("redisadapter: encode %s: %w", req.Type, err)
	}
	return p.publishWait(ctx, channel, payload)
}

// publishBroadcast encodes a broadcast once and publishes it.
func (p *publisher) publishBroadcast(ctx context.Context, nsp string, sel selector, event string, args []any) error {
	channel, payload, err := p.proto.encodeBroadcast(p.opts.Key, p.uid, nsp, sel, event, args)
	if err != nil {
		return err
	}
	return p.publish(ctx, channel, payload)
}

// publishServerSideEmit publishes a server-side event that wants no
// acknowledgement.
func (p *publisher) publishServerSideEmit(ctx context.Context, nsp string, event string, args []any) error {
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return err
	}
	req.UID = p.uid
	return p.publishRequest(ctx, nsp, req)
}

// serverSideEmitRequest is the request carrying [event, ...args].
func serverSideEmitRequest(event string, args []any) (request, error) {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return request{}, fmt.Errorf("redisadapter: serverSideEmit %q: %w", event, err)
	}
	return request{Type: typeServerSideEmit, Data: data}, nil
}

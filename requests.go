package redisadapter

// Requests between nodes, the requester's side: pending requests, finished
// when every other node answered or failed at the deadline. The answering
// side is in answer.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/rueidis"
)

type pendingRequest struct {
	typ      requestType
	expected int // answers awaited: the other subscribers of the request channel
	answers  int
	finished bool // answers == expected, or the requester stopped waiting
	err      error
	done     chan struct{}

	sockets []RemoteSocket
	ids     []string
	rooms   []string
	acks    []json.RawMessage

	// A broadcast with acknowledgements: answers counts the nodes that
	// reported their client count, clients the acks awaited (this node's
	// clients and those reported), acks holds the clients' acks.
	clients int
}

// complete reports whether every answer p waits for has arrived.
func (p *pendingRequest) complete() bool {
	if p.typ == typeBroadcast {
		return p.answers >= p.expected && len(p.acks) >= p.clients
	}
	return p.answers >= p.expected
}

// maxEarlyAcks bounds the acks a broadcast with acknowledgements keeps
// beyond the client counts reported so far, while some node has not
// reported: an ack may overtake its node's count (Node's cluster client
// publishes each message through a random Redis node). Past the counts,
// and past this allowance, acks are dropped, so a flood of acks cannot
// grow memory.
const maxEarlyAcks = 1024

// addBroadcastAnswer adds a client count (typeBroadcastClientCount) or a
// client's ack to p, a broadcast with acknowledgements, unless p is
// finished or the answer is past its bounds, and finishes p when it is
// complete. Call with pendingMu held.
func (p *pendingRequest) addBroadcastAnswer(typ requestType, count int, ack json.RawMessage) {
	if p.finished {
		return
	}
	switch typ {
	case typeBroadcastClientCount:
		if count < 0 || p.answers >= p.expected {
			return
		}
		p.answers++
		p.clients = min(p.clients+count, math.MaxInt32) // no overflow, whatever nodes claim
	case typeBroadcastAck:
		limit := p.clients
		if p.answers < p.expected {
			limit += maxEarlyAcks
		}
		if len(p.acks) >= limit {
			return
		}
		if ack == nil {
			ack = json.RawMessage("null") // an ack without arguments
		}
		p.acks = append(p.acks, ack)
	default:
		return
	}
	if p.complete() {
		p.finish(nil)
	}
}

// broadcastAnswer adds an answer to the pending broadcast with
// acknowledgements id, if it is still pending.
func (a *Adapter) broadcastAnswer(id string, typ requestType, count int, ack json.RawMessage) {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if p := a.pending[id]; p != nil && p.typ == typeBroadcast {
		p.addBroadcastAnswer(typ, count, ack)
	}
}

// serverCount returns how many nodes (Go or Node.js, this one included)
// subscribe to the namespace's request channel: Node's serverCount, PUBSUB
// NUMSUB summed over every Redis node (in a cluster each node counts only
// the subscribers connected to it). A node that does not answer is skipped;
// the call fails only when none answers.
func (a *Adapter) serverCount(ctx context.Context, ns *namespace) (int, error) {
	total, answered := 0, 0
	var lastErr error
	lastErr = errors.New("no Redis node known")
	for _, node := range a.client.Nodes() {
		cmd, channel := ns.proto.countCommand(node)
		counts, err := node.Do(ctx, cmd).AsIntMap()
		if err != nil {
			lastErr = err
			continue
		}
		total += int(counts[channel])
		answered++
	}
	if answered == 0 {
		if errors.Is(lastErr, rueidis.ErrClosing) {
			return 0, ErrClosed // Close ran meanwhile
		}
		return 0, fmt.Errorf("redisadapter: PUBSUB NUMSUB: %w", unreachable(lastErr))
	}
	return total, nil
}

// ask publishes req to the other nodes of ns and collects their answers
// until all arrived, the request timeout passed, or ctx ended. It returns
// the pending request, with what arrived, and an error saying why it
// stopped early, once the request is pending or needs no other node; nil
// and the error when it fails before (closed, subscriptions down, no
// server count, an encoding error).
func (a *Adapter) ask(ctx context.Context, ns *namespace, req request) (*pendingRequest, error) {
	return a.askWithin(ctx, ns, req, a.opts.RequestTimeout, true, 0, nil)
}

// askWithin is ask with its own time limit. remote false asks no other
// node (a local broadcast with acknowledgements). clients is how many
// acknowledgements this node's own clients owe a broadcast with
// acknowledgements; deliver, when not nil, is called with the request id
// once the request is pending, to deliver it to those clients.
func (a *Adapter) askWithin(ctx context.Context, ns *namespace, req request, limit time.Duration, remote bool, clients int, deliver func(id string)) (*pendingRequest, error) {
	if a.isClosed() {
		return nil, ErrClosed
	}
	// The cause names the limit that ran out when it is ours, not the caller's.
	why := fmt.Errorf("the timeout %v passed", limit)
	if limit == a.opts.RequestTimeout {
		why = fmt.Errorf("RequestTimeout %v passed", limit)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, limit, why)
	defer cancel()
	n := 1
	if remote {
		// Until this node's subscriptions are back it would miss answers, and
		// the server count misses it: a partial view passed off as whole.
		if err := a.subs.waitReady(ctx); err != nil {
			return nil, fmt.Errorf("%w: %s: subscriptions are down: %w", ErrUnavailable, req.typ, context.Cause(ctx))
		}
		var err error
		if n, err = a.serverCount(ctx, ns); err != nil {
			return nil, err
		}
	}
	p := &pendingRequest{typ: req.typ, expected: n - 1, clients: clients, done: make(chan struct{})}
	if p.complete() {
		return p, nil
	}
	req.uid, req.id = a.uid, randomID(8)
	// Encoded first: a request that cannot be sent reaches nobody, local
	// clients included.
	var channel string
	var payload []byte
	if p.expected > 0 {
		var err error
		if channel, payload, err = a.encodeRequest(ns.proto, req); err != nil {
			return nil, err
		}
	}
	a.pendingMu.Lock()
	if a.isClosed() {
		a.pendingMu.Unlock()
		return nil, ErrClosed
	}
	a.pending[req.id] = p
	a.pendingMu.Unlock()

	if deliver != nil {
		deliver(req.id)
	}
	var err error
	if p.expected > 0 {
		// Waited for: the requester then waits for answers, which a lost
		// request never brings.
		err = a.publishWait(ctx, channel, payload)
	}
	if err == nil {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	a.pendingMu.Lock()
	delete(a.pending, req.id)
	p.finished = true // late answers are ignored; done is not needed any more
	complete := p.complete()
	a.pendingMu.Unlock()
	switch {
	case err != nil:
		return p, err
	case p.err != nil:
		return p, p.err
	case complete:
		return p, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		a.stats.timeouts.Add(1)
		cause := context.Cause(ctx)
		if cause != why {
			cause = fmt.Errorf("the caller's deadline: %w", cause)
		}
		if req.typ == typeBroadcast {
			return p, fmt.Errorf("%w: %s: %d of %d known clients did not answer, and %d of %d other nodes did not report how many they reached, before %w",
				ErrTimeout, req.typ, max(p.clients-len(p.acks), 0), p.clients, p.expected-p.answers, p.expected, cause)
		}
		return p, fmt.Errorf("%w: %s: %d of %d other nodes answered before %w", ErrTimeout, req.typ, p.answers, p.expected, cause)
	default:
		return p, fmt.Errorf("redisadapter: %s: %w", req.typ, ctx.Err())
	}
}

// finish ends p with err (nil: every answer arrived) unless it already
// ended: the last answer and Close may both try. Call with pendingMu held.
func (p *pendingRequest) finish(err error) {
	if p.finished {
		return
	}
	p.err, p.finished = err, true
	close(p.done)
}

// failPending ends every pending request with ErrClosed.
func (a *Adapter) failPending() {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	for id, p := range a.pending {
		p.finish(ErrClosed)
		delete(a.pending, id)
	}
}

// handleResponse adds an answer to its pending request. Answers past the
// expected count, or to a request no longer pending, are ignored, so a flood
// of answers cannot grow memory.
func (a *Adapter) handleResponse(in inbound) {
	m := in.PubSubMessage
	r, err := in.ns.proto.decodeAnswer(m.Message)
	if err != nil {
		a.dropped(m, err)
		return
	}
	a.pendingMu.Lock()
	p := a.pending[r.id]
	a.pendingMu.Unlock()
	if p == nil {
		return // another node's request, or one that already ended
	}
	if p.typ == typeBroadcast {
		a.broadcastAnswer(r.id, r.typ, r.clientCount, r.ack)
		return
	}
	// p.typ never changes: checked outside the lock.
	if p.typ == typeRemoteFetch && len(r.ids) > 0 || p.typ == typeSockets && len(r.sockets) > 0 {
		a.dropped(m, malformed("%s answered with sockets of the other kind", p.typ))
	}
	for i := range r.sockets {
		r.sockets[i].Node = r.uid
	}
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if p.finished {
		return
	}
	switch p.typ {
	case typeRemoteFetch:
		p.sockets = append(p.sockets, r.sockets...)
	case typeSockets:
		p.ids = append(p.ids, r.ids...)
	case typeAllRooms:
		p.rooms = append(p.rooms, r.rooms...)
	case typeServerSideEmit:
		p.acks = append(p.acks, r.ack)
	}
	p.answers++
	if p.complete() {
		p.finish(nil)
	}
}

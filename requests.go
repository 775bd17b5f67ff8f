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
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// pendingRequests are this node's requests waiting for answers, by request
// id. Its lock also guards the requests' answers.
type pendingRequests struct {
	mu     sync.Mutex
	m      map[string]*pendingRequest
	closed bool // failAll ran: nothing more is added
}

// add makes p pending under id; ErrClosed after failAll.
func (ps *pendingRequests) add(id string, p *pendingRequest) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return ErrClosed
	}
	ps.m[id] = p
	return nil
}

// remove ends the request id, whose answers are ignored from now on, and
// reports whether every answer p waited for had arrived.
func (ps *pendingRequests) remove(id string, p *pendingRequest) (complete bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.m, id)
	p.finished = true
	return p.complete()
}

// update runs f on the request id under the lock, if it is pending.
func (ps *pendingRequests) update(id string, f func(p *pendingRequest)) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[id]; p != nil {
		f(p)
	}
}

// typeOf is the type of the pending request id; false when none is.
func (ps *pendingRequests) typeOf(id string) (requestType, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[id]; p != nil {
		return p.typ, true
	}
	return 0, false
}

// failAll ends every pending request with err, and every later add.
func (ps *pendingRequests) failAll(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.closed = true
	for id, p := range ps.m {
		p.finish(err)
		delete(ps.m, id)
	}
}

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
// complete. Call under the pendingRequests lock.
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
	a.pending.update(id, func(p *pendingRequest) {
		if p.typ == typeBroadcast {
			p.addBroadcastAnswer(typ, count, ack)
		}
	})
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
	var m message
	if p.expected > 0 {
		var err error
		if m, err = a.pub.encodeRequest(ns.proto, req); err != nil {
			return nil, err
		}
	}
	if err := a.pending.add(req.id, p); err != nil {
		return nil, err
	}

	if deliver != nil {
		deliver(req.id)
	}
	var err error
	if p.expected > 0 {
		// Waited for: the requester then waits for answers, which a lost
		// request never brings.
		err = a.pub.publishWait(ctx, ns.proto, m)
	}
	if err == nil {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	complete := a.pending.remove(req.id, p) // late answers are ignored; done is not needed any more
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
// ended: the last answer and Close may both try. Call under the
// pendingRequests lock.
func (p *pendingRequest) finish(err error) {
	if p.finished {
		return
	}
	p.err, p.finished = err, true
	close(p.done)
}

// handleResponse adds an answer to its pending request. Answers past the
// expected count, or to a request no longer pending, are ignored, so a flood
// of answers cannot grow memory.
func (a *Adapter) handleResponse(in inbound) {
	m := in.PubSubMessage
	r, err := in.ns.proto.decodeAnswer(m.Message)
	if err != nil {
		a.in.dropped(m, err)
		return
	}
	typ, ok := a.pending.typeOf(r.id)
	if !ok {
		return // another node's request, or one that already ended
	}
	if typ == typeBroadcast {
		a.broadcastAnswer(r.id, r.typ, r.clientCount, r.ack)
		return
	}
	if typ == typeRemoteFetch && len(r.ids) > 0 || typ == typeSockets && len(r.sockets) > 0 {
		a.in.dropped(m, malformed("%s answered with sockets of the other kind", typ))
	}
	for i := range r.sockets {
		r.sockets[i].Node = r.uid
	}
	a.pending.update(r.id, func(p *pendingRequest) { p.add(r) })
}

// add adds the answer r to p, and finishes p when it is complete. Call
// under the pendingRequests lock.
func (p *pendingRequest) add(r answer) {
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

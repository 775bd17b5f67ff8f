package redisadapter

// Requests between nodes: the requester's side (pending requests, finished
// when every other node answered or failed at the deadline) and the
// answering side.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
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
		cmd, channel := a.proto.countCommand(node, a.opts.Key, ns.name)
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
		return 0, fmt.Errorf("redisadapter: PUBSUB NUMSUB: %w", lastErr)
	}
	return total, nil
}

// ask publishes req to the other nodes of ns and collects their answers
// until all arrived, the request timeout passed, or ctx ended. Once the
// request was published it returns what arrived, with an error saying why
// it stopped early; before that (closed, no server count), nil and the error.
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
			return nil, fmt.Errorf("%w: %s: subscriptions are down: %w", ErrUnavailable, req.Type, context.Cause(ctx))
		}
		var err error
		if n, err = a.serverCount(ctx, ns); err != nil {
			return nil, err
		}
	}
	p := &pendingRequest{typ: req.Type, expected: n - 1, clients: clients, done: make(chan struct{})}
	if p.complete() {
		return p, nil
	}
	req.UID, req.RequestID = a.uid, randomID(8)
	// Encoded first: a request that cannot be sent reaches nobody, local
	// clients included.
	var channel string
	var payload []byte
	if p.expected > 0 {
		var err error
		if channel, payload, err = a.encodeRequest(ns.name, req); err != nil {
			return nil, err
		}
	}
	a.pendingMu.Lock()
	if a.isClosed() {
		a.pendingMu.Unlock()
		return nil, ErrClosed
	}
	a.pending[req.RequestID] = p
	a.pendingMu.Unlock()

	if deliver != nil {
		deliver(req.RequestID)
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
	delete(a.pending, req.RequestID)
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
		if req.Type == typeBroadcast {
			return p, fmt.Errorf("%w: %s: %d of %d known clients did not answer, and %d of %d other nodes did not report how many they reached, before %w",
				ErrTimeout, req.Type, max(p.clients-len(p.acks), 0), p.clients, p.expected-p.answers, p.expected, cause)
		}
		return p, fmt.Errorf("%w: %s: %d of %d other nodes answered before %w", ErrTimeout, req.Type, p.answers, p.expected, cause)
	default:
		return p, fmt.Errorf("redisadapter: %s: %w", req.Type, ctx.Err())
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
	r, err := a.proto.decodeResponse(m.Message)
	if err != nil {
		a.dropped(m, err)
		return
	}
	a.pendingMu.Lock()
	p := a.pending[r.RequestID]
	a.pendingMu.Unlock()
	if p == nil {
		return // another node's request, or one that already ended
	}
	if p.typ == typeBroadcast {
		a.broadcastAnswer(r.RequestID, r.Type, r.ClientCount, r.Ack)
		return
	}
	// Decode outside the lock; p.typ never changes.
	var sockets []RemoteSocket
	var ids []string
	switch p.typ {
	case typeRemoteFetch:
		err = json.Unmarshal(r.Sockets, &sockets)
		for i := range sockets {
			sockets[i].Node = r.UID
		}
	case typeSockets:
		err = json.Unmarshal(r.Sockets, &ids)
	}
	if err != nil {
		a.dropped(m, err)
	}
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	if p.finished {
		return
	}
	switch p.typ {
	case typeRemoteFetch:
		p.sockets = append(p.sockets, sockets...)
	case typeSockets:
		p.ids = append(p.ids, ids...)
	case typeAllRooms:
		p.rooms = append(p.rooms, r.Rooms...)
	case typeServerSideEmit:
		ack := r.Data
		if ack == nil {
			ack = json.RawMessage("null") // Node leaves out an undefined ack
		}
		p.acks = append(p.acks, ack)
	}
	p.answers++
	if p.complete() {
		p.finish(nil)
	}
}

// AllRooms returns every room of namespace nsp across the fleet, sorted,
// private socket-id rooms included (as in Node). When some node does not
// answer in time it returns the rooms that arrived and an error wrapping
// ErrTimeout; while this node's subscriptions are down it waits for them,
// within RequestTimeout, then fails with ErrUnavailable.
func (a *Adapter) AllRooms(ctx context.Context, nsp string) ([]string, error) {
	ns, err := a.namespace(nsp)
	if err != nil {
		return nil, err
	}
	var remote []string
	if a.proto.asksFor(typeAllRooms) {
		var p *pendingRequest
		if p, err = a.ask(ctx, ns, request{Type: typeAllRooms}); p == nil {
			return nil, err
		}
		remote = p.rooms
	} else {
		// A room exists while it has sockets: the union of every socket's rooms.
		var sockets []RemoteSocket
		if sockets, err = a.Of(ns.name).FetchSockets(ctx); sockets == nil && err != nil {
			return nil, err
		}
		for _, s := range sockets {
			remote = append(remote, s.Rooms...)
		}
	}
	rooms := append(a.server.Rooms(ns.name), remote...)
	slices.Sort(rooms)
	return slices.Compact(rooms), err
}

// ServerCount returns how many servers (Go or Node.js, this one included)
// serve the first of Options.Namespaces ("/" by default), from PUBSUB
// NUMSUB as in Node. It fails with ErrUnavailable while this node's
// subscriptions are down (it would not count itself).
func (a *Adapter) ServerCount(ctx context.Context) (int, error) {
	if a.isClosed() {
		return 0, ErrClosed
	}
	if err := a.checkSubscribed(); err != nil {
		return 0, err // this node would not be counted
	}
	return a.serverCount(ctx, a.namespaces[a.opts.Namespaces[0]])
}

// ServerSideEmit sends event with args to the other servers of namespace
// nsp (not to clients), where OnServerSideEmit handlers (or Node's
// io.on(event)) receive it, and returns each server's acknowledgement as
// JSON. Servers without a handler for event do not answer, as in Node, so
// the call then waits until the request timeout. When some server does not
// answer in time it returns the answers that arrived and an error wrapping
// ErrTimeout; while this node's subscriptions are down it waits for them,
// within RequestTimeout, then fails with ErrUnavailable.
func (a *Adapter) ServerSideEmit(ctx context.Context, nsp, event string, args ...any) ([]json.RawMessage, error) {
	ns, err := a.namespace(nsp)
	if err != nil {
		return nil, err
	}
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return nil, err
	}
	p, err := a.ask(ctx, ns, req)
	if p == nil {
		return nil, err
	}
	return p.acks, err
}

package redisadapter

// Requests between nodes, the requester's side (a node's or an Emitter's):
// pending requests, finished when every server asked answered or failed at
// the deadline. The answering side is in answer.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// requester sends requests to the servers of a namespace and collects
// their answers: the Adapter's, and an Emitter's, which serves nothing. It
// holds the pending requests; its owner routes each answer it reads to
// handleAnswer.
type requester struct {
	uid     string // in every request: where the servers answer
	client  rueidis.Client
	pub     *publisher
	timeout time.Duration // Options.RequestTimeout
	// counted is 1 when the requester is itself one of the servers it
	// counts (a node: it subscribes to the request channel and does not
	// answer itself), 0 for an Emitter: a request waits for the count
	// less this.
	counted int
	// reachWithin, when set, bounds how long a broadcast with
	// acknowledgements that this node's own clients owe waits to reach
	// the other nodes (subscriptions back, the server count) before it
	// asks those clients alone: the Adapter's Options.ProbeTimeout.
	reachWithin time.Duration
	pending     pendingRequests
	timeouts    atomic.Uint64 // Stats.RequestTimeouts
}

func newRequester(uid string, client rueidis.Client, pub *publisher, timeout time.Duration, counted int) *requester {
	return &requester{
		uid: uid, client: client, pub: pub, timeout: timeout, counted: counted,
		pending: pendingRequests{m: make(map[string]*pendingRequest)},
	}
}

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

// isClosed reports whether failAll ran.
func (ps *pendingRequests) isClosed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.closed
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
	expected int // answers awaited: the servers counted, less the requester
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
func (rq *requester) broadcastAnswer(id string, typ requestType, count int, ack json.RawMessage) {
	rq.pending.update(id, func(p *pendingRequest) {
		if p.typ == typeBroadcast {
			p.addBroadcastAnswer(typ, count, ack)
		}
	})
}

// serverCount returns how many servers (Go or Node.js, a requesting node
// included) subscribe to the channel namespace ns's requests go to: Node's
// serverCount, PUBSUB NUMSUB (SHARDNUMSUB) summed over every Redis node (in
// a cluster each node counts only the subscribers connected to it). An
// Emitter is not counted: it never subscribes to that channel. A Redis
// node that does not answer is skipped; the call fails only when none
// answers.
func (rq *requester) serverCount(ctx context.Context, ns nsProtocol) (int, error) {
	total, answered := 0, 0
	var lastErr error
	lastErr = errors.New("no Redis node known")
	lastAddr := "none"
	for addr, node := range rq.client.Nodes() {
		cmd, channel := ns.countCommand(node)
		counts, err := node.Do(ctx, cmd).AsIntMap()
		if err != nil {
			lastErr, lastAddr = err, addr
			continue
		}
		total += int(counts[channel])
		answered++
	}
	if answered == 0 {
		// ErrClosing: Close ran meanwhile (it aborts the publisher before
		// it closes the client), or a Sentinel client closed the old
		// master's connections as it moved to the new one.
		if errors.Is(lastErr, rueidis.ErrClosing) && rq.pub.ctx.Err() != nil {
			return 0, ErrClosed
		}
		return 0, errorf("counting the servers to wait for: no Redis node answered (last asked: %s): %w", lastAddr, unreachable(lastErr))
	}
	return total, nil
}

// askWithin publishes req to the servers of namespace ns and collects
// their answers, which reach the requester through the subscriptions
// answers tracks, until all arrived, limit passed, or ctx ended. It
// returns the pending request, with what arrived, and an error saying why
// it stopped early, once the request is pending or needs no server; nil
// and the error when it fails before (closed, subscriptions down, no
// server count, an encoding error).
//
// remote false asks no other server (a node's local broadcast with
// acknowledgements). clients is how many acknowledgements the requester's
// own clients owe a broadcast with acknowledgements; deliver, when not
// nil, is called with the request id once the request is pending, to
// deliver it to those clients.
func (rq *requester) askWithin(ctx context.Context, ns nsProtocol, answers *subscriptionTracker, req request, limit time.Duration, remote bool, clients int, deliver func(id string)) (*pendingRequest, error) {
	if rq.pending.isClosed() {
		return nil, ErrClosed
	}
	// The cause names the limit that ran out when it is ours, not the caller's.
	why := fmt.Errorf("the timeout %v passed", limit)
	if limit == rq.timeout {
		why = fmt.Errorf("RequestTimeout %v passed", limit)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, limit, why)
	defer cancel()
	n := rq.counted
	var unreached error // the other nodes were not reached: the local clients are asked alone
	if remote {
		// A broadcast this node's own clients wait for goes to them
		// anyway, soon, when the fleet cannot be reached (a frozen Redis
		// answers nothing until the probe declares it dead).
		localWaits := deliver != nil && clients > 0
		rctx := ctx
		if localWaits && rq.reachWithin > 0 {
			var stop context.CancelFunc
			rctx, stop = context.WithTimeout(ctx, rq.reachWithin)
			defer stop()
		}
		var err error
		if n, err = rq.reach(rctx, ns, answers, req); err != nil {
			if !localWaits || ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return nil, err
			}
			unreached, n = err, rq.counted
		}
	}
	p := &pendingRequest{typ: req.typ, expected: max(n-rq.counted, 0), clients: clients, done: make(chan struct{})}
	if p.complete() {
		return p, nil
	}
	req.uid, req.id = rq.uid, randomID(8)
	// Encoded first: a request that cannot be sent reaches nobody, local
	// clients included.
	var m message
	if p.expected > 0 {
		var err error
		if m, err = rq.pub.encodeRequest(ns, req); err != nil {
			return nil, err
		}
	}
	if err := rq.pending.add(req.id, p); err != nil {
		return nil, err
	}

	if deliver != nil {
		deliver(req.id)
	}
	var err error
	if p.expected > 0 {
		// Waited for: the requester then waits for answers, which a lost
		// request never brings.
		err = rq.pub.publishWait(ctx, ns, m)
	}
	if err == nil {
		select {
		case <-p.done:
		case <-ctx.Done():
		}
	}
	complete := rq.pending.remove(req.id, p) // late answers are ignored; done is not needed any more
	if unreached != nil {
		return p, notReached(req, p, unreached, ctx.Err())
	}
	switch {
	case err != nil:
		return p, err
	case p.err != nil:
		return p, p.err
	case complete:
		return p, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		rq.timeouts.Add(1)
		cause := context.Cause(ctx)
		if cause != why {
			cause = fmt.Errorf("the caller's deadline: %w", cause)
		}
		servers := "other nodes"
		if rq.counted == 0 {
			servers = "servers"
		}
		if req.typ == typeBroadcast {
			return p, errorf("%w: %s: %d of %d known clients did not answer, and %d of %d %s did not report how many they reached, before %w",
				ErrTimeout, req.typ, max(p.clients-len(p.acks), 0), p.clients, p.expected-p.answers, p.expected, servers, cause)
		}
		return p, errorf("%w: %s: %d of %d %s answered before %w", ErrTimeout, req.typ, p.answers, p.expected, servers, cause)
	default:
		return p, errorf("%s: %w", req.typ, ctx.Err())
	}
}

// reach waits until the requester's subscriptions are live and counts the
// servers of namespace ns, up to ctx. Until the subscriptions are back the
// requester would miss answers, and a node would miss itself in the
// server count: a partial view passed off as whole.
func (rq *requester) reach(ctx context.Context, ns nsProtocol, answers *subscriptionTracker, req request) (int, error) {
	if err := answers.waitReady(ctx); err != nil {
		if errors.Is(err, ErrClosed) {
			return 0, err
		}
		if last := answers.lastError(); last != nil && !answers.wasLive() {
			return 0, errorf("%w: %s: subscriptions are down: %w (last error: %v)", ErrUnavailable, req.typ, context.Cause(ctx), last)
		}
		return 0, errorf("%w: %s: subscriptions are down: %w", ErrUnavailable, req.typ, context.Cause(ctx))
	}
	return rq.serverCount(ctx, ns)
}

// notReached is the error of a broadcast with acknowledgements that only
// this node's clients got, because the other nodes could not be reached
// (cause); waited is how the wait for those clients ended (nil: they all
// answered).
func notReached(req request, p *pendingRequest, cause, waited error) error {
	clients := fmt.Sprintf("all %d of this node's clients answered", p.clients)
	if waited != nil {
		clients = fmt.Sprintf("%d of this node's %d clients answered before %v", len(p.acks), p.clients, waited)
	}
	if !errors.Is(cause, ErrUnavailable) {
		cause = fmt.Errorf("%w: %w", ErrUnavailable, cause)
	}
	return errorf("%s: the other nodes were not reached, only this node's clients (%s): %w", req.typ, clients, cause)
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

// ask is the requester's askWithin for this node, within RequestTimeout:
// its answers come on its subscriptions.
func (a *Adapter) ask(ctx context.Context, ns *namespace, req request) (*pendingRequest, error) {
	return a.askWithin(ctx, ns, req, a.opts.RequestTimeout, true, 0, nil)
}

// askWithin is the requester's askWithin for this node.
func (a *Adapter) askWithin(ctx context.Context, ns *namespace, req request, limit time.Duration, remote bool, clients int, deliver func(id string)) (*pendingRequest, error) {
	if a.isClosed() {
		return nil, ErrClosed
	}
	if remote && deliver != nil && clients > 0 {
		// Known not to reach the fleet now (the probe failed): this node's
		// clients get the broadcast at once, and the caller their
		// acknowledgements. Subscriptions being renewed are waited for,
		// within the requester's reachWithin.
		if p := ns.probe; p != nil && !p.healthy() {
			cause := p.unproven()
			p, err := a.req.askWithin(ctx, ns.proto, a.subs, req, limit, false, clients, deliver)
			if p == nil {
				return nil, err
			}
			return p, notReached(req, p, cause, err)
		}
	}
	return a.req.askWithin(ctx, ns.proto, a.subs, req, limit, remote, clients, deliver)
}

// handleResponse hands an answer read by this node to the requester,
// counting and logging one it cannot use.
func (a *Adapter) handleResponse(in inbound) {
	if err := a.req.handleAnswer(in.ns.proto, in.Message); err != nil {
		a.in.dropped(in.PubSubMessage, err)
	}
}

// handleAnswer adds msg, an answer read on one of the requester's
// subscriptions to namespace ns, to its pending request. Answers past the
// expected count, or to a request no longer pending, are ignored, so a
// flood of answers cannot grow memory. It returns an error, for the
// caller to count, when msg is malformed (an answer with sockets of the
// other kind still counts as the server's answer).
func (rq *requester) handleAnswer(ns nsProtocol, msg string) error {
	r, err := ns.decodeAnswer(msg)
	if err != nil {
		return err
	}
	typ, ok := rq.pending.typeOf(r.id)
	if !ok {
		return nil // another requester's, or one that already ended
	}
	if typ == typeBroadcast {
		rq.broadcastAnswer(r.id, r.typ, r.clientCount, r.ack)
		return nil
	}
	if typ == typeRemoteFetch && len(r.ids) > 0 || typ == typeSockets && len(r.sockets) > 0 {
		err = malformed("%s answered with sockets of the other kind", typ)
	}
	for i := range r.sockets {
		r.sockets[i].Node = r.uid
	}
	rq.pending.update(r.id, func(p *pendingRequest) { p.add(r) })
	return err
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

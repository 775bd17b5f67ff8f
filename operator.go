package redisadapter

import (
	"context"
	"encoding/json"
	"time"
)

// BroadcastOperator is a selection of one namespace's sockets, across the
// fleet, by rooms and excluded rooms: Node's BroadcastOperator. Get one from
// a Namespace's To, Except, Local or Timeout, or from Adapter.To for the
// root namespace. Its methods act on the selected sockets; the namespace's
// servers are reached through the Namespace. It is a value: To, Except,
// Local and Timeout return a new operator and leave the receiver
// unchanged. Every method is safe for concurrent use.
type BroadcastOperator struct {
	a       *Adapter
	ns      *namespace
	t       target
	timeout time.Duration // EmitWithAck's; 0: RequestTimeout
}

// To narrows the selection to sockets in any of rooms (added to those
// already named). A socket in several of them is reached once.
func (o BroadcastOperator) To(rooms ...string) BroadcastOperator {
	o.t = o.t.to(rooms)
	return o
}

// Except leaves out sockets in any of rooms.
func (o BroadcastOperator) Except(rooms ...string) BroadcastOperator {
	o.t = o.t.except(rooms)
	return o
}

// Local restricts the operator to this node's sockets: nothing is published.
func (o BroadcastOperator) Local() BroadcastOperator {
	o.t.local = true
	return o
}

// Timeout sets how long EmitWithAck waits for acknowledgements (Node's
// timeout flag); without it, or with d <= 0, Options.RequestTimeout. It
// does not bound RequestTimeout: a poll of slow clients may wait longer.
// Other methods ignore it.
func (o BroadcastOperator) Timeout(d time.Duration) BroadcastOperator {
	o.timeout = d
	return o
}

func (o BroadcastOperator) check() error {
	if o.t.err != nil {
		return o.t.err
	}
	if o.a.isClosed() {
		return ErrClosed
	}
	return nil
}

// Emit sends event with args to the selected sockets on every node. Args are
// encoded once, in the protocol's form (msgpack using their json struct
// tags in classic mode, JSON in sharded and streams modes), so clients on
// any node receive the JSON they would get from a local emit.
//
// Emit returns once the message is queued for Redis, without waiting for
// it: consecutive Emits leave together, in the order they were called on
// this node, and reach each client in that order (with sharded pub/sub,
// within each room: rooms live on different shards). Flush waits for Redis
// to take them and reports a failure; failures are also counted in
// Stats.PublishFailures and logged. Emit blocks while the queue holds
// Options.PublishQueue bytes. When the last batch did not reach Redis, Emit
// waits for this message's answer instead.
//
// Local sockets get the event even when publishing fails. The errors:
// ErrPublish (the queue stayed full, or the waited-for answer was a
// failure) means other nodes did not get it; ErrMessageTooLarge when the
// encoded event exceeds Options.MaxMessageSize; ErrClosed after Close;
// ErrUnknownNamespace from Of.
//
// While this node's subscriptions are down (Redis lost, a failover: see
// Ping) Emit does not publish and fails with ErrPublish and ErrUnavailable:
// the other nodes' subscriptions are most likely down too, and an event
// that was not sent can be sent again without a duplicate. In streams mode
// (Streams) it publishes anyway: the entry waits in the stream for every
// node. Emit returns within RequestTimeout.
func (o BroadcastOperator) Emit(ctx context.Context, event string, args ...any) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.t.emit(ctx, event, args, func() { o.a.deliver(o.ns, o.t.sel, event, args) })
}

// EmitWithAck sends event with args to the selected sockets on every node,
// as Emit, and returns each client's acknowledgement (the first argument
// its callback was given, as JSON; null when none), in the order they
// arrived: Node's emitWithAck and timeout(ms).emit(event, ..., callback).
// Each other node reports how many of its clients it emitted to, then
// forwards each one's acknowledgement. The call returns when every
// expected acknowledgement arrived, or when the timeout (see Timeout) or
// ctx's deadline passes: then with the acknowledgements that arrived and
// an error wrapping ErrTimeout that says how many clients, and how many
// nodes, did not answer. A ctx canceled before either returns what
// arrived with ctx's error. A client that disconnects, misses the event
// (Options.SocketQueue) or already owes 64 acknowledgements (it gets the
// event without the request) counts as not answering; nothing is waited
// for past the timeout.
//
// Other errors: ErrUnavailable while this node's subscriptions are down
// (it waits for them within the timeout, and sends nothing); ErrPublish
// when the request did not reach Redis (then only this node's clients got
// the event, and the acknowledgements returned are those of theirs that
// arrived before the publish failed);
// ErrMessageTooLarge; ErrClosed, also when Close ends the call;
// ErrUnknownNamespace from Of. With Local nothing is published and only
// this node's clients are waited for.
//
// Safe for concurrent use, including many calls reaching one connection.
// go-socket.io's Conn.Emit with an ack callback is not: it numbers acks
// with an unsynchronized counter of the connection, shared by its
// namespaces. The adapter makes its own acked emits (this method's, and
// those of other nodes' broadcasts with acknowledgements) take turns per
// connection, but cannot make yours take part: once any server of the
// fleet emits with acknowledgements, do not call Conn.Emit with a callback;
// use a.Of(nsp).To(conn.ID()).Local().EmitWithAck instead. Do not wait for
// the acknowledgement of a client inside one of its own event handlers:
// go-socket.io reads the acknowledgement on the goroutine running the
// handler, so it arrives only after the call timed out (leave the client
// out with Except(conn.ID()), or call from another goroutine).
//
// go-socket.io keeps an acknowledgement callback until the client answers
// or disconnects, with no deadline; the bound of 64 per socket above keeps
// a client that never answers from holding more.
func (o BroadcastOperator) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	limit := o.timeout
	if limit <= 0 {
		limit = o.a.opts.RequestTimeout
	}
	a, ns := o.a, o.ns
	targets := a.selectConnected(ns, o.t.sel)
	deliver := func(id string) {
		ev := outEvent{event: event, args: emittable(args), ack: func(raw json.RawMessage) {
			a.broadcastAnswer(id, typeBroadcastAck, 0, raw)
		}}
		for _, s := range targets {
			a.enqueue(s, ev)
		}
	}
	req := request{
		typ:        typeBroadcast,
		frame:      broadcastFrame{nsp: ns.name, event: event, args: args, sel: o.t.sel},
		ackTimeout: limit,
	}
	p, err := a.askWithin(ctx, ns, req, limit, !o.t.local, len(targets), deliver)
	if p == nil {
		return nil, err
	}
	return p.acks, err
}

// SocketsJoin makes the selected sockets, on every node, join rooms. This
// node's sockets have joined when it returns; other nodes apply it when they
// read the message (pub/sub: there is no acknowledgement, as in Node).
func (o BroadcastOperator) SocketsJoin(ctx context.Context, rooms ...string) error {
	return o.remote(ctx, typeRemoteJoin, rooms, false)
}

// SocketsLeave makes the selected sockets, on every node, leave rooms, like
// SocketsJoin.
func (o BroadcastOperator) SocketsLeave(ctx context.Context, rooms ...string) error {
	return o.remote(ctx, typeRemoteLeave, rooms, false)
}

// DisconnectSockets disconnects the selected sockets on every node, like
// SocketsJoin. go-socket.io cannot leave one namespace only, so a Go node
// closes the connection whatever close says; a Node.js node honours it.
func (o BroadcastOperator) DisconnectSockets(ctx context.Context, close bool) error {
	return o.remote(ctx, typeRemoteDisconnect, nil, close)
}

func (o BroadcastOperator) remote(ctx context.Context, typ requestType, rooms []string, closeConn bool) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.t.remote(ctx, typ, rooms, closeConn, func() { o.a.applyLocal(o.ns, typ, o.t.sel, rooms, closeConn) })
}

// FetchSockets returns the selected sockets of every node, this one's first.
// When some node does not answer in time it returns the sockets that arrived
// and an error wrapping ErrTimeout. While this node's subscriptions are down
// it waits for them, within RequestTimeout, and then fails with
// ErrUnavailable rather than answer with this node's sockets alone. A
// socket id reported by two nodes means colliding ids (see
// SessionIDGenerator): it is logged and counted in Stats.IDCollisions.
func (o BroadcastOperator) FetchSockets(ctx context.Context) ([]RemoteSocket, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var out []RemoteSocket
	for _, s := range o.a.selectConnected(o.ns, o.t.sel) {
		out = append(out, o.a.describe(s))
	}
	if o.t.local {
		return out, nil
	}
	p, err := o.a.ask(ctx, o.ns, request{typ: typeRemoteFetch, sel: o.t.sel})
	if p == nil {
		return out, err
	}
	out = append(out, p.sockets...)
	ids := make([]string, len(out))
	for i, s := range out {
		ids[i] = s.ID
	}
	o.a.checkCollisions(o.ns, ids)
	return out, err
}

// CountSockets returns how many sockets are selected across the fleet: the
// size of a room (or of several) cluster-wide. Without Except it asks only
// for socket ids; with Except, or in sharded or streams mode (whose
// protocol has no such request), it fetches the sockets. Errors are those of
// FetchSockets; the count then covers the nodes that answered.
func (o BroadcastOperator) CountSockets(ctx context.Context) (int, error) {
	if err := o.check(); err != nil {
		return 0, err
	}
	if len(o.t.sel.Except) > 0 || !o.a.proto.asksFor(typeSockets) {
		sockets, err := o.FetchSockets(ctx)
		return len(sockets), err
	}
	var ids []string
	for _, s := range o.a.selectConnected(o.ns, o.t.sel) {
		ids = append(ids, s.conn.ID())
	}
	if o.t.local {
		return len(ids), nil
	}
	p, err := o.a.ask(ctx, o.ns, request{typ: typeSockets, rooms: o.t.sel.Rooms})
	if p == nil {
		return len(ids), err
	}
	ids = append(ids, p.ids...)
	return len(ids) - o.a.checkCollisions(o.ns, ids), err
}

// checkCollisions logs and counts ids that appear more than once (each
// node reports a socket once, so a repeat means two nodes share an id), and
// returns how many repeats there were.
func (a *Adapter) checkCollisions(ns *namespace, ids []string) int {
	seen := make(map[string]struct{}, len(ids))
	repeats := 0
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			repeats++
			a.log.Error("socket id held by two nodes: use redisadapter.SessionIDGenerator on every server", "id", id, "namespace", ns.name)
			continue
		}
		seen[id] = struct{}{}
	}
	a.stats.collisions.Add(uint64(repeats))
	return repeats
}

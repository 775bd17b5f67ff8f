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

// Emit sends event with args to the selected sockets on every node. It
// returns once the message is queued for Redis (Flush waits for Redis);
// the Emits of one node reach each client in the order they were called
// (in sharded mode, within each room). Local sockets get the event even
// when publishing fails. It blocks while the queue holds
// Options.PublishQueue bytes, and returns within RequestTimeout. See
// Publishing in the package doc.
//
// Errors: ErrPublish when the other nodes will not get the event (the
// queue stayed full; the last batch failed, and then so did this one; or,
// with ErrUnavailable, this node's subscriptions are down or its delivery
// probe is failing, except in streams mode); ErrMessageTooLarge past Options.MaxMessageSize;
// ErrClosed after Close; ErrUnknownNamespace.
func (o BroadcastOperator) Emit(ctx context.Context, event string, args ...any) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.t.emit(ctx, event, args, func() { o.a.deliver(o.ns, o.t.sel, event, args) })
}

// EmitWithAck sends event with args to the selected sockets on every node,
// as Emit, and returns each client's acknowledgement (its callback's first
// argument as JSON, null when none) in the order they arrived: Node's
// emitWithAck. It returns once every expected acknowledgement is in, or at
// the timeout (see Timeout) or ctx's deadline with those that arrived and
// an error wrapping ErrTimeout that counts the clients and nodes that did
// not answer. A client that disconnects, misses the event
// (Options.SocketQueue) or already owes 64 acknowledgements counts as not
// answering. With Local nothing is published: only this node's clients
// are asked.
//
// Other errors: ctx's error, with what arrived, when ctx is canceled;
// ErrUnavailable when the other nodes cannot be reached (the delivery
// probe failed, or the subscriptions and the server count are not back
// within Options.ProbeTimeout): this node's clients get the event all the same,
// and their acknowledgements are returned with the error, which says the
// other nodes were not reached (with no local client to ask, nothing is
// sent); ErrPublish when the request did not reach Redis (only
// this node's clients got the event; their acknowledgements that arrived
// before the failure are returned); ErrMessageTooLarge; ErrClosed, also
// when Close ends the call; ErrUnknownNamespace.
//
// Safe for concurrent use, even by many calls reaching one connection; but
// do not mix it with go-socket.io's Conn.Emit with a callback, nor wait for
// a client inside its own event handler: see Acknowledgements in the
// package doc.
func (o BroadcastOperator) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	limit := o.timeout
	if limit <= 0 {
		limit = o.a.opts.RequestTimeout
	}
	a, ns := o.a, o.ns
	targets := a.local.selectConnected(ns, o.t.sel)
	deliver := func(id string) {
		ev := outEvent{event: event, args: emittable(args), ack: func(raw json.RawMessage) {
			a.req.broadcastAnswer(id, typeBroadcastAck, 0, raw)
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
// read the message (there is no acknowledgement, as in Node). It is
// published, and fails, as Emit.
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
	for _, s := range o.a.local.selectConnected(o.ns, o.t.sel) {
		out = append(out, o.a.local.describe(s))
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
	for _, s := range o.a.local.selectConnected(o.ns, o.t.sel) {
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

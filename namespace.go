package redisadapter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	socketio "github.com/googollee/go-socket.io"
)

// Namespace is one namespace of the fleet: Node's Namespace. Get one from
// Adapter.Of. Its operations act on the whole namespace: every socket
// (Emit, SocketsJoin, FetchSockets...) or its servers (AllRooms,
// ServerCount, ServerSideEmit). To, Except, Local and Timeout return a
// BroadcastOperator on a selection of its sockets, which has no server
// operations. It also registers the namespace's handlers.
//
// A Namespace is a small value, safe for concurrent use. Of a namespace
// not in Options.Namespaces, every operation returns ErrUnknownNamespace
// and every registration panics.
type Namespace struct {
	all BroadcastOperator // every socket of the namespace
}

// Of returns namespace nsp ("" is the root namespace "/").
func (a *Adapter) Of(nsp string) Namespace {
	ns, err := a.namespace(nsp)
	o := BroadcastOperator{a: a, ns: ns, t: target{pub: a.pub, err: err}}
	if ns != nil {
		o.t.proto, o.t.sent = ns.proto, ns.sent
	}
	return Namespace{all: o}
}

// To returns the sockets of the root namespace ("/") that are in any of
// rooms; shorthand for a.Of("/").To(rooms...).
func (a *Adapter) To(rooms ...string) BroadcastOperator { return a.Of("/").To(rooms...) }

// To returns the namespace's sockets that are in any of rooms.
func (n Namespace) To(rooms ...string) BroadcastOperator { return n.all.To(rooms...) }

// Except returns the namespace's sockets that are in none of rooms.
func (n Namespace) Except(rooms ...string) BroadcastOperator { return n.all.Except(rooms...) }

// Local returns the namespace's sockets on this node: nothing is published.
func (n Namespace) Local() BroadcastOperator { return n.all.Local() }

// Timeout returns every socket of the namespace, with d as EmitWithAck's
// timeout (see BroadcastOperator.Timeout).
func (n Namespace) Timeout(d time.Duration) BroadcastOperator { return n.all.Timeout(d) }

// Emit sends event with args to every socket of the namespace, on every
// node, as BroadcastOperator.Emit does.
func (n Namespace) Emit(ctx context.Context, event string, args ...any) error {
	return n.all.Emit(ctx, event, args...)
}

// EmitWithAck sends event with args to every socket of the namespace and
// returns their acknowledgements, as BroadcastOperator.EmitWithAck does.
func (n Namespace) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	return n.all.EmitWithAck(ctx, event, args...)
}

// SocketsJoin makes every socket of the namespace join rooms, as
// BroadcastOperator.SocketsJoin does.
func (n Namespace) SocketsJoin(ctx context.Context, rooms ...string) error {
	return n.all.SocketsJoin(ctx, rooms...)
}

// SocketsLeave makes every socket of the namespace leave rooms, as
// BroadcastOperator.SocketsLeave does.
func (n Namespace) SocketsLeave(ctx context.Context, rooms ...string) error {
	return n.all.SocketsLeave(ctx, rooms...)
}

// DisconnectSockets disconnects every socket of the namespace, as
// BroadcastOperator.DisconnectSockets does.
func (n Namespace) DisconnectSockets(ctx context.Context, close bool) error {
	return n.all.DisconnectSockets(ctx, close)
}

// FetchSockets returns every socket of the namespace, as
// BroadcastOperator.FetchSockets does.
func (n Namespace) FetchSockets(ctx context.Context) ([]RemoteSocket, error) {
	return n.all.FetchSockets(ctx)
}

// CountSockets returns how many sockets the namespace has across the
// fleet, as BroadcastOperator.CountSockets does.
func (n Namespace) CountSockets(ctx context.Context) (int, error) {
	return n.all.CountSockets(ctx)
}

// AllRooms returns every room of the namespace across the fleet, sorted,
// private socket-id rooms included (as in Node). When some node does not
// answer in time it returns the rooms that arrived and an error wrapping
// ErrTimeout; while this node's subscriptions are down it waits for them,
// within RequestTimeout, then fails with ErrUnavailable. Sharded and
// streams modes, whose protocol has no such request, fetch the sockets.
func (n Namespace) AllRooms(ctx context.Context) ([]string, error) {
	if err := n.all.check(); err != nil {
		return nil, err
	}
	a, ns := n.all.a, n.all.ns
	var remote []string
	var err error
	if a.proto.asksFor(typeAllRooms) {
		var p *pendingRequest
		if p, err = a.ask(ctx, ns, request{typ: typeAllRooms}); p == nil {
			return nil, err
		}
		remote = p.rooms
	} else {
		// A room exists while it has sockets: the union of every socket's rooms.
		var sockets []RemoteSocket
		if sockets, err = n.all.FetchSockets(ctx); sockets == nil && err != nil {
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
// serve the namespace, from PUBSUB NUMSUB (SHARDNUMSUB) as in Node. It
// fails with ErrUnavailable while this node's subscriptions are down (it
// would not count itself), or when Redis does not answer.
func (n Namespace) ServerCount(ctx context.Context) (int, error) {
	if err := n.all.check(); err != nil {
		return 0, err
	}
	if err := n.all.a.checkSubscribed(); err != nil {
		return 0, err // this node would not be counted
	}
	return n.all.a.req.serverCount(ctx, n.all.ns.proto)
}

// ServerSideEmit sends event with args to the namespace's other servers
// (not to clients), where OnServerSideEmit handlers (or Node's
// io.on(event)) receive it, and returns each server's acknowledgement as
// JSON. Servers without a handler for event do not answer, as in Node, so
// the call then waits until the request timeout. When some server does not
// answer in time it returns the answers that arrived and an error wrapping
// ErrTimeout; while this node's subscriptions are down it waits for them,
// within RequestTimeout, then fails with ErrUnavailable.
func (n Namespace) ServerSideEmit(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	if err := n.all.check(); err != nil {
		return nil, err
	}
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return nil, err
	}
	p, err := n.all.a.ask(ctx, n.all.ns, req)
	if p == nil {
		return nil, err
	}
	return p.acks, err
}

// OnServerSideEmit registers h as the handler of event for events other
// servers send with ServerSideEmit (or Node's serverSideEmit) in the
// namespace. A second registration for the same event replaces the first.
// It panics when the namespace is not served.
func (n Namespace) OnServerSideEmit(event string, h ServerSideHandler) {
	ns := n.served()
	a := n.all.a
	a.handlers.set(ns.name, event, h)
}

// OnConnect registers f as the namespace's connect handler, in place of
// the server's OnConnect, which would replace the adapter's (see New). A
// second registration replaces the first. It panics when the namespace is
// not served.
func (n Namespace) OnConnect(f func(socketio.Conn) error) {
	ns := n.served()
	ns.mu.Lock()
	ns.onConnect = f
	ns.mu.Unlock()
}

// OnDisconnect registers f as the namespace's disconnect handler, in place
// of the server's OnDisconnect, as OnConnect. It panics when the namespace
// is not served.
func (n Namespace) OnDisconnect(f func(socketio.Conn, string)) {
	ns := n.served()
	ns.mu.Lock()
	ns.onDisconnect = f
	ns.mu.Unlock()
}

// served returns the namespace's state, and panics when it is not served:
// registering a handler there is a programming error.
func (n Namespace) served() *namespace {
	if n.all.ns == nil {
		panic(fmt.Sprintf("%v: add it to Options.Namespaces", n.all.t.err))
	}
	return n.all.ns
}

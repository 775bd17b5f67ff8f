package redisadapter

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"time"
)

// emitterUID is the uid an Emitter puts in its broadcasts, as Node's
// @socket.io/redis-emitter does: no adapter has it, so every node delivers.
const emitterUID = "emitter"

// Emitter reaches the sockets of a fleet from a process that holds none: a
// job worker, a cron, an admin tool. It publishes the frames the adapter
// publishes (wire-compatible with Node's @socket.io/redis-emitter 5.x), so
// every node, Go or Node.js, delivers them, and it asks the fleet what a
// node asks (sockets, counts, rooms, acknowledgements), which Node's
// emitter cannot.
//
// An Emitter is one namespace, as a Namespace is: its Emit, EmitWithAck,
// SocketsJoin, SocketsLeave, DisconnectSockets, FetchSockets and
// CountSockets act on every socket of it, AllRooms, ServerCount and
// ServerSideEmit on its servers; To, Except and Timeout return an
// EmitterOperator on a selection of its sockets, and Of the Emitter of
// another namespace. It is a small value sharing one Redis client with
// every Emitter and EmitterOperator derived from the same NewEmitter,
// which Close closes. Every method is safe for concurrent use. The zero
// Emitter (what NewEmitter returns with an error) has no client: its
// methods panic.
//
// Its broadcasts carry the uid "emitter", as Node's emitter's do, so that
// every node delivers them. Its requests carry a uid of its own, random
// per NewEmitter, and the servers answer on that uid's channel, to which
// the Emitter subscribes in a namespace when it first asks something
// there, until Close. An Emitter is not a server: it is not counted by
// ServerCount, and a request waits for the answers of every server
// counted.
type Emitter struct {
	all EmitterOperator // every socket of the namespace
}

// EmitterOperator is a selection of one namespace's sockets, by rooms and
// excluded rooms, that an Emitter reaches: the Emitter's BroadcastOperator.
// Get one from Emitter.To, Except or Timeout. It is a value: To, Except
// and Timeout return a new one and leave the receiver unchanged. Every
// method is safe for concurrent use.
type EmitterOperator struct {
	core    *emitterCore
	nsp     string
	t       target
	timeout time.Duration // EmitWithAck's; 0: RequestTimeout
}

type emitterCore struct {
	pub     *publisher
	proto   protocol      // broadcasts, joins, leaves and disconnects: uid "emitter"
	req     *requester    // requests, under the Emitter's own uid
	answers *answerSubs   // where their answers come, by namespace
	stats   counters      // of the answer subscriptions
	conns   *connCounter  // the client's connections
	timeout time.Duration // Options.RequestTimeout
	closed  atomic.Bool   // the first Close took it: the others return at once
	done    chan struct{} // closed by Close
}

// NewEmitter connects an Emitter to Redis through c. Of opts, only Key,
// RequestTimeout (it bounds every publish and request), MaxMessageSize,
// PublishQueue, ReceiveQueue (answers waiting to be read) and Logger
// apply; opts may be nil. The Emitter starts on the root namespace "/".
// Close it when done: it stops the goroutine that publishes, and the
// subscriptions its requests started.
//
// It returns an Emitter, not a pointer, as its methods do: an Emitter is a
// small value sharing its connection, like a Namespace. It fails
// with ErrConfig for an invalid connector or options, with ErrUnavailable
// (wrapping the cause) when Redis cannot be reached, and with Redis's
// error when it refuses the credentials.
func NewEmitter(ctx context.Context, c Connector, opts *Options) (Emitter, error) {
	if c == nil {
		return Emitter{}, errorf("%w: connector is required", ErrConfig)
	}
	c, o, client, conns, err := open(c, opts)
	if err != nil {
		return Emitter{}, err
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return Emitter{}, errorf("pinging %s: %w", redisTarget(c.clientOption()), unreachable(err))
	}
	uid := randomID(6)
	log := o.Logger.With("emitter", "redisadapter", "uid", uid)
	proto := c.protocol(o.Key, emitterUID)
	core := &emitterCore{
		pub:     newPublisher(client, o, emitterUID, log, nil, nil),
		proto:   proto,
		timeout: o.RequestTimeout,
		conns:   conns,
		done:    make(chan struct{}),
	}
	core.req = newRequester(uid, client, core.pub, o.RequestTimeout, 0)
	core.answers = newAnswerSubs(client, c.protocol(o.Key, uid), core.req, o, log, &core.stats)
	return Emitter{all: EmitterOperator{core: core, nsp: "/", t: target{pub: core.pub, proto: proto.namespace("/")}}}, nil
}

// Of returns the Emitter of namespace nsp. If nsp does not start with '/'
// or holds a '#', every method of the returned Emitter but Flush and Close
// fails with ErrConfig.
func (e Emitter) Of(nsp string) Emitter {
	core := e.all.core
	e.all = EmitterOperator{core: core, nsp: nsp, t: target{pub: core.pub, proto: core.proto.namespace(nsp), err: validNamespace(nsp)}}
	return e
}

// To returns the namespace's sockets that are in any of rooms.
func (e Emitter) To(rooms ...string) EmitterOperator { return e.all.To(rooms...) }

// Except returns the namespace's sockets that are in none of rooms.
func (e Emitter) Except(rooms ...string) EmitterOperator { return e.all.Except(rooms...) }

// Timeout returns every socket of the namespace, with d as EmitWithAck's
// timeout (see EmitterOperator.Timeout).
func (e Emitter) Timeout(d time.Duration) EmitterOperator { return e.all.Timeout(d) }

// Emit sends event with args to every socket of the namespace, on every
// node, as EmitterOperator.Emit does.
func (e Emitter) Emit(ctx context.Context, event string, args ...any) error {
	return e.all.Emit(ctx, event, args...)
}

// SocketsJoin makes every socket of the namespace, on every node, join
// rooms, as EmitterOperator.SocketsJoin does.
func (e Emitter) SocketsJoin(ctx context.Context, rooms ...string) error {
	return e.all.SocketsJoin(ctx, rooms...)
}

// SocketsLeave makes every socket of the namespace, on every node, leave
// rooms, as EmitterOperator.SocketsLeave does.
func (e Emitter) SocketsLeave(ctx context.Context, rooms ...string) error {
	return e.all.SocketsLeave(ctx, rooms...)
}

// DisconnectSockets disconnects every socket of the namespace, on every
// node, as EmitterOperator.DisconnectSockets does.
func (e Emitter) DisconnectSockets(ctx context.Context, close bool) error {
	return e.all.DisconnectSockets(ctx, close)
}

// EmitWithAck sends event with args to every socket of the namespace and
// returns their acknowledgements, as EmitterOperator.EmitWithAck does.
func (e Emitter) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	return e.all.EmitWithAck(ctx, event, args...)
}

// FetchSockets returns every socket of the namespace, as
// EmitterOperator.FetchSockets does.
func (e Emitter) FetchSockets(ctx context.Context) ([]RemoteSocket, error) {
	return e.all.FetchSockets(ctx)
}

// CountSockets returns how many sockets the namespace has across the
// fleet, as EmitterOperator.CountSockets does.
func (e Emitter) CountSockets(ctx context.Context) (int, error) {
	return e.all.CountSockets(ctx)
}

// AllRooms returns every room of the namespace across the fleet, sorted,
// private socket-id rooms included, as Namespace.AllRooms does: when some
// server does not answer in time it returns the rooms that arrived and an
// error wrapping ErrTimeout. Sharded and streams modes, whose protocol has
// no such request, fetch the sockets.
func (e Emitter) AllRooms(ctx context.Context) ([]string, error) {
	o := e.all
	if err := o.check(); err != nil {
		return nil, err
	}
	var rooms []string
	var err error
	if o.core.proto.asksFor(typeAllRooms) {
		var p *pendingRequest
		if p, err = o.ask(ctx, request{typ: typeAllRooms}, o.core.timeout); p == nil {
			return nil, err
		}
		rooms = p.rooms
	} else {
		// A room exists while it has sockets: the union of every socket's rooms.
		var sockets []RemoteSocket
		if sockets, err = o.FetchSockets(ctx); sockets == nil && err != nil {
			return nil, err
		}
		for _, s := range sockets {
			rooms = append(rooms, s.Rooms...)
		}
	}
	slices.Sort(rooms)
	return slices.Compact(rooms), err
}

// ServerCount returns how many servers (Go or Node.js) serve the
// namespace, from PUBSUB NUMSUB (SHARDNUMSUB) as in Node; the Emitter is
// not one of them. It fails with ErrUnavailable when Redis does not
// answer.
func (e Emitter) ServerCount(ctx context.Context) (int, error) {
	if err := e.all.check(); err != nil {
		return 0, err
	}
	return e.all.core.req.serverCount(ctx, e.all.t.proto)
}

// ServerSideEmit sends event with args to every server of the namespace
// (their OnServerSideEmit handlers, or Node's io.on(event)) and returns
// each server's acknowledgement as JSON, as Namespace.ServerSideEmit does.
// Servers without a handler for event do not answer, as in Node, so the
// call then waits until RequestTimeout (or ctx's deadline): it returns the
// answers that arrived and an error wrapping ErrTimeout. It fails with
// ErrUnavailable when the Emitter's answer subscription cannot be
// confirmed within RequestTimeout, ErrPublish when the request did not
// reach Redis, ErrMessageTooLarge, ErrConfig for an invalid namespace and
// ErrClosed after Close, or when Close ends the call. (Node's emitter has
// no acknowledgements, nor a sharded form of it.)
func (e Emitter) ServerSideEmit(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	if err := e.all.check(); err != nil {
		return nil, err
	}
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return nil, err
	}
	p, err := e.all.ask(ctx, req, e.all.core.timeout)
	if p == nil {
		return nil, err
	}
	return p.acks, err
}

// To narrows the selection to sockets in any of rooms (added to those
// already named).
func (o EmitterOperator) To(rooms ...string) EmitterOperator {
	o.t = o.t.to(rooms)
	return o
}

// Except leaves out sockets in any of rooms.
func (o EmitterOperator) Except(rooms ...string) EmitterOperator {
	o.t = o.t.except(rooms)
	return o
}

// Timeout sets how long EmitWithAck waits for acknowledgements (Node's
// timeout flag); without it, or with d <= 0, Options.RequestTimeout. Other
// methods ignore it.
func (o EmitterOperator) Timeout(d time.Duration) EmitterOperator {
	o.timeout = d
	return o
}

// Emit sends event with args to the selected sockets on every node. It
// returns once the message is queued, as BroadcastOperator.Emit does: the
// publishing semantics, Flush included, are the same. It returns
// ErrMessageTooLarge past MaxMessageSize, ErrPublish (wrapping the cause,
// and ErrUnavailable when Redis could not be reached) when the queue stays
// full or the last batch failed, ErrConfig for an invalid namespace (see
// Emitter.Of) and ErrClosed after Close.
func (o EmitterOperator) Emit(ctx context.Context, event string, args ...any) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.t.emit(ctx, event, args, nil)
}

// SocketsJoin makes the selected sockets, on every node, join rooms. It is
// published, and fails, as Emit.
func (o EmitterOperator) SocketsJoin(ctx context.Context, rooms ...string) error {
	return o.remote(ctx, typeRemoteJoin, rooms, false)
}

// SocketsLeave makes the selected sockets, on every node, leave rooms, as
// SocketsJoin.
func (o EmitterOperator) SocketsLeave(ctx context.Context, rooms ...string) error {
	return o.remote(ctx, typeRemoteLeave, rooms, false)
}

// DisconnectSockets disconnects the selected sockets on every node, as
// SocketsJoin (see BroadcastOperator.DisconnectSockets for what close
// means on a Go node).
func (o EmitterOperator) DisconnectSockets(ctx context.Context, close bool) error {
	return o.remote(ctx, typeRemoteDisconnect, nil, close)
}

func (o EmitterOperator) remote(ctx context.Context, typ requestType, rooms []string, closeConn bool) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.t.remote(ctx, typ, rooms, closeConn, nil)
}

// EmitWithAck sends event with args to the selected sockets on every node
// and returns each client's acknowledgement (its callback's first
// argument as JSON, null when none) in the order they arrived, as
// BroadcastOperator.EmitWithAck does: every server reports how many of its
// clients got the event, then forwards their acknowledgements. It returns
// once every expected acknowledgement is in, or at the timeout (see
// Timeout) or ctx's deadline with those that arrived and an error wrapping
// ErrTimeout that counts the clients and servers that did not answer.
// Other errors: ErrUnavailable when the Emitter's answer subscription
// cannot be confirmed within the timeout (nothing is sent); ErrPublish
// when the request did not reach Redis; ErrMessageTooLarge; ErrConfig for
// an invalid namespace; ErrClosed after Close, also when Close ends the
// call.
func (o EmitterOperator) EmitWithAck(ctx context.Context, event string, args ...any) ([]json.RawMessage, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	limit := o.timeout
	if limit <= 0 {
		limit = o.core.timeout
	}
	req := request{
		typ:        typeBroadcast,
		frame:      broadcastFrame{nsp: o.nsp, event: event, args: args, sel: o.t.sel},
		ackTimeout: limit,
	}
	p, err := o.ask(ctx, req, limit)
	if p == nil {
		return nil, err
	}
	return p.acks, err
}

// FetchSockets returns the selected sockets of every node, as
// BroadcastOperator.FetchSockets does: when some server does not answer in
// time it returns the sockets that arrived and an error wrapping
// ErrTimeout. Other errors are those of EmitWithAck.
func (o EmitterOperator) FetchSockets(ctx context.Context) ([]RemoteSocket, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	p, err := o.ask(ctx, request{typ: typeRemoteFetch, sel: o.t.sel}, o.core.timeout)
	if p == nil {
		return nil, err
	}
	return p.sockets, err
}

// CountSockets returns how many sockets are selected across the fleet: the
// size of a room (or of several) cluster-wide. Without Except it asks only
// for socket ids; with Except, or in sharded or streams mode (whose
// protocol has no such request), it fetches the sockets. Errors are those
// of FetchSockets; the count then covers the servers that answered. A
// socket id reported twice (two nodes sharing ids, see
// SessionIDGenerator) counts once.
func (o EmitterOperator) CountSockets(ctx context.Context) (int, error) {
	if err := o.check(); err != nil {
		return 0, err
	}
	var ids []string
	var err error
	if len(o.t.sel.Except) > 0 || !o.core.proto.asksFor(typeSockets) {
		var sockets []RemoteSocket
		sockets, err = o.FetchSockets(ctx)
		for _, s := range sockets {
			ids = append(ids, s.ID)
		}
	} else {
		var p *pendingRequest
		if p, err = o.ask(ctx, request{typ: typeSockets, rooms: o.t.sel.Rooms}, o.core.timeout); p == nil {
			return 0, err
		}
		ids = p.ids
	}
	slices.Sort(ids)
	return len(slices.Compact(ids)), err
}

// ask sends req to the namespace's servers, through the namespace's answer
// subscription (started on first use), and collects their answers within
// limit.
func (o EmitterOperator) ask(ctx context.Context, req request, limit time.Duration) (*pendingRequest, error) {
	sub, err := o.core.answers.of(o.nsp)
	if err != nil {
		return nil, err
	}
	return o.core.req.askWithin(ctx, sub.proto, sub.subs, req, limit, true, 0, nil)
}

func (o EmitterOperator) check() error {
	select {
	case <-o.core.done:
		return ErrClosed
	default:
		return o.t.err
	}
}

// Flush waits until Redis has taken every message queued before the call;
// see Adapter.Flush.
func (e Emitter) Flush(ctx context.Context) error {
	select {
	case <-e.all.core.done:
		return ErrClosed
	default:
		return e.all.core.pub.flush(ctx)
	}
}

// Close fails the requests waiting for answers with ErrClosed, publishes
// what is queued, then ends the Emitter's answer subscriptions and closes
// the Redis client shared by this Emitter and every one derived from it;
// every method then returns ErrClosed. As Adapter.Close, it waits for the
// queue until ctx ends and then returns ctx's error, and returns an error
// wrapping ErrPublish when a queued message failed that no Flush reported.
// Calling it again returns nil at once.
func (e Emitter) Close(ctx context.Context) error {
	core := e.all.core
	if !core.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(core.done)
	core.req.pending.failAll(ErrClosed)
	var err error
	select {
	case <-core.pub.closeNow():
		if unsent := core.pub.takeUnreported(); unsent != nil {
			err = errorf("close: %w", unsent)
		}
	case <-ctx.Done():
		err = errorf("close: queued messages not all sent: %w", ctx.Err())
	}
	core.answers.close()
	core.pub.abort()
	core.pub.client.Close() // the answer subscriptions end with its connections
	<-core.pub.closeNow()   // what was left failed at once on the closed client
	return err
}

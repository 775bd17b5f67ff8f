package redisadapter

import (
	"context"
	"fmt"
	"sync/atomic"
)

// emitterUID is the uid an Emitter puts in its broadcasts, as Node's
// @socket.io/redis-emitter does: no adapter has it, so every node delivers.
const emitterUID = "emitter"

// Emitter reaches the sockets of a fleet from a process that holds none: a
// job worker, a cron, an admin tool. It publishes the frames the adapter
// publishes (wire-compatible with Node's @socket.io/redis-emitter 5.x), so
// every node, Go or Node.js, delivers them. It never subscribes.
//
// An Emitter is one namespace, as a Namespace is: its Emit, SocketsJoin,
// SocketsLeave and DisconnectSockets act on every socket of it,
// ServerSideEmit on its servers; To and Except return an EmitterOperator
// on a selection of its sockets, and Of the Emitter of another namespace.
// It is a small value sharing one Redis client with every Emitter and
// EmitterOperator derived from the same NewEmitter, which Close closes.
// Every method is safe for concurrent use. The zero Emitter (what
// NewEmitter returns with an error) has no client: its methods panic.
type Emitter struct {
	all EmitterOperator // every socket of the namespace
}

// EmitterOperator is a selection of one namespace's sockets, by rooms and
// excluded rooms, that an Emitter reaches: the Emitter's BroadcastOperator.
// Get one from Emitter.To or Except. It is a value: To and Except return a
// new one and leave the receiver unchanged. Every method is safe for
// concurrent use.
type EmitterOperator struct {
	core *emitterCore
	t    target
}

type emitterCore struct {
	pub    *publisher
	proto  protocol
	closed atomic.Bool   // the first Close took it: the others return at once
	done   chan struct{} // closed by Close
}

// NewEmitter connects an Emitter to Redis through c. Of opts, only Key,
// RequestTimeout (it bounds every publish), MaxMessageSize, PublishQueue
// and Logger apply; opts may be nil. The Emitter starts on the root
// namespace "/". Close it when done: it stops the goroutine that
// publishes.
//
// It returns an Emitter, not a pointer, as its methods do: an Emitter is a
// small value sharing its connection, like a Namespace. It fails
// with ErrConfig for an invalid connector or options, with ErrUnavailable
// (wrapping the cause) when Redis cannot be reached, and with Redis's
// error when it refuses the credentials.
func NewEmitter(ctx context.Context, c Connector, opts *Options) (Emitter, error) {
	if c == nil {
		return Emitter{}, fmt.Errorf("%w: connector is required", ErrConfig)
	}
	c, o, client, err := open(c, opts)
	if err != nil {
		return Emitter{}, err
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return Emitter{}, fmt.Errorf("redisadapter: ping redis: %w", unreachable(err))
	}
	proto := c.protocol(o.Key, emitterUID)
	core := &emitterCore{
		pub:   newPublisher(client, o, emitterUID, o.Logger.With("emitter", "redisadapter"), nil),
		proto: proto,
		done:  make(chan struct{}),
	}
	return Emitter{all: EmitterOperator{core: core, t: target{pub: core.pub, proto: proto.namespace("/")}}}, nil
}

// Of returns the Emitter of namespace nsp. If nsp does not start with '/'
// or holds a '#', every method of the returned Emitter but Flush and Close
// fails with ErrConfig.
func (e Emitter) Of(nsp string) Emitter {
	core := e.all.core
	e.all = EmitterOperator{core: core, t: target{pub: core.pub, proto: core.proto.namespace(nsp), err: validNamespace(nsp)}}
	return e
}

// To returns the namespace's sockets that are in any of rooms.
func (e Emitter) To(rooms ...string) EmitterOperator { return e.all.To(rooms...) }

// Except returns the namespace's sockets that are in none of rooms.
func (e Emitter) Except(rooms ...string) EmitterOperator { return e.all.Except(rooms...) }

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

// ServerSideEmit sends event to every server of the namespace (their
// OnServerSideEmit handlers, or Node's io.on). Acknowledgements are not
// supported, as in Node's emitter: an emitter is not subscribed to hear
// them. (Node's emitter has no sharded form of it; this one sends it to
// sharded and streams fleets too.) It is published, and fails, as Emit.
func (e Emitter) ServerSideEmit(ctx context.Context, event string, args ...any) error {
	if err := e.all.check(); err != nil {
		return err
	}
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return err
	}
	core := e.all.core
	req.uid = core.pub.uid
	m, err := core.pub.encodeRequest(e.all.t.proto, req)
	if err != nil {
		return err
	}
	return core.pub.publish(ctx, e.all.t.proto, m)
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

// Close publishes what is queued, then closes the Redis client shared by
// this Emitter and every one derived from it; every method then returns
// ErrClosed. As Adapter.Close, it waits for the queue until ctx ends and
// then returns ctx's error, and returns an error wrapping ErrPublish when
// a queued message failed that no Flush reported. Calling it again returns
// nil at once.
func (e Emitter) Close(ctx context.Context) error {
	core := e.all.core
	if !core.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(core.done)
	var err error
	select {
	case <-core.pub.closeNow():
		if unsent := core.pub.takeUnreported(); unsent != nil {
			err = fmt.Errorf("redisadapter: close: %w", unsent)
		}
	case <-ctx.Done():
		err = fmt.Errorf("redisadapter: close: queued messages not all sent: %w", ctx.Err())
	}
	core.pub.abort()
	core.pub.client.Close()
	<-core.pub.closeNow() // what was left failed at once on the closed client
	return err
}

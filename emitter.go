package redisadapter

import (
	"context"
	"fmt"
	"sync"
)

// emitterUID is the uid an Emitter puts in its broadcasts, as Node's
// @socket.io/redis-emitter does: no adapter has it, so every node delivers.
const emitterUID = "emitter"

// Emitter reaches the sockets of a fleet from a process that holds none: a
// job worker, a cron, an admin tool. It publishes the frames the adapter
// publishes (wire-compatible with Node's @socket.io/redis-emitter 5.x), so
// every node, Go or Node.js, delivers them. It never subscribes.
//
// An Emitter is a namespace and a selection of its sockets, as a
// BroadcastOperator is: Of, To and Except return a new Emitter, sharing
// the Redis client, and leave the receiver unchanged, so one can be used
// from many goroutines. ServerSideEmit acts on the namespace's servers and
// fails with ErrConfig on an Emitter narrowed by To or Except. Close closes
// the shared client for every Emitter derived from the same NewEmitter.
// The zero Emitter (what NewEmitter returns with an error) has no client:
// its methods panic.
type Emitter struct {
	core *emitterCore
	t    target
}

type emitterCore struct {
	*publisher
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

// NewEmitter connects an Emitter to Redis through c. Of opts, only Key,
// RequestTimeout (it bounds every publish), MaxMessageSize, PublishQueue
// and Logger apply; opts may be nil. The Emitter starts on the root
// namespace "/". Close it when done: it stops the goroutine that
// publishes.
//
// It returns an Emitter, not a pointer, as its methods do: an Emitter is a
// small value sharing its connection, like a BroadcastOperator. It fails
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
		publisher: newPublisher(client, proto, o, emitterUID, o.Logger.With("emitter", "redisadapter"), nil),
		done:      make(chan struct{}),
	}
	return Emitter{core: core, t: target{pub: core.publisher, proto: proto.namespace("/")}}, nil
}

// Of returns an Emitter on namespace nsp, with no rooms selected. If nsp
// does not start with '/' or holds a '#', every method of the returned
// Emitter fails with ErrConfig.
func (e Emitter) Of(nsp string) Emitter {
	e.t = target{pub: e.core.publisher, proto: e.core.proto.namespace(nsp), err: validNamespace(nsp)}
	return e
}

// To returns an Emitter that targets sockets in any of rooms (added to those
// already named).
func (e Emitter) To(rooms ...string) Emitter {
	e.t = e.t.to(rooms)
	return e
}

// Except returns an Emitter that leaves out sockets in any of rooms.
func (e Emitter) Except(rooms ...string) Emitter {
	e.t = e.t.except(rooms)
	return e
}

// Emit sends event with args to the selected sockets on every node. It
// returns once the message is queued, as BroadcastOperator.Emit does: the
// publishing semantics, Flush included, are the same. It returns
// ErrMessageTooLarge past MaxMessageSize, ErrPublish (wrapping the cause,
// and ErrUnavailable when Redis could not be reached) when the queue stays
// full or the last batch failed, and ErrClosed after Close.
func (e Emitter) Emit(ctx context.Context, event string, args ...any) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.t.emit(ctx, event, args, nil)
}

// SocketsJoin makes the selected sockets, on every node, join rooms.
func (e Emitter) SocketsJoin(ctx context.Context, rooms ...string) error {
	return e.remote(ctx, typeRemoteJoin, rooms, false)
}

// SocketsLeave makes the selected sockets, on every node, leave rooms.
func (e Emitter) SocketsLeave(ctx context.Context, rooms ...string) error {
	return e.remote(ctx, typeRemoteLeave, rooms, false)
}

// DisconnectSockets disconnects the selected sockets on every node (see
// BroadcastOperator.DisconnectSockets for what close means on a Go node).
func (e Emitter) DisconnectSockets(ctx context.Context, close bool) error {
	return e.remote(ctx, typeRemoteDisconnect, nil, close)
}

func (e Emitter) remote(ctx context.Context, typ requestType, rooms []string, closeConn bool) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.t.remote(ctx, typ, rooms, closeConn, nil)
}

// ServerSideEmit sends event to every server of the namespace (their
// OnServerSideEmit handlers, or Node's io.on). Acknowledgements are not
// supported, as in Node's emitter: an emitter is not subscribed to hear
// them. (Node's emitter has no sharded form of it; this one sends it to
// sharded and streams fleets too.)
func (e Emitter) ServerSideEmit(ctx context.Context, event string, args ...any) error {
	if err := e.check(); err != nil {
		return err
	}
	if err := e.t.wholeNamespace("ServerSideEmit"); err != nil {
		return err
	}
	req, err := serverSideEmitRequest(event, args)
	if err != nil {
		return err
	}
	req.uid = e.core.uid
	channel, payload, err := e.core.encodeRequest(e.t.proto, req)
	if err != nil {
		return err
	}
	return e.core.publish(ctx, channel, payload)
}

func (e Emitter) check() error {
	select {
	case <-e.core.done:
		return ErrClosed
	default:
		return e.t.err
	}
}

// Flush waits until Redis has taken every message queued before the call;
// see Adapter.Flush.
func (e Emitter) Flush(ctx context.Context) error {
	select {
	case <-e.core.done:
		return ErrClosed
	default:
		return e.core.flush(ctx)
	}
}

// Close publishes what is queued, then closes the Redis client shared by
// this Emitter and every one derived from it; every method then returns
// ErrClosed. As Adapter.Close, it waits for the queue until ctx ends and
// then returns ctx's error, and returns an error wrapping ErrPublish when
// a queued message failed that no Flush reported. Calling it again returns
// nil at once.
func (e Emitter) Close(ctx context.Context) error {
	var err error
	e.core.closeOnce.Do(func() {
		close(e.core.done)
		select {
		case <-e.core.closeNow():
			if unsent := e.core.takeUnreported(); unsent != nil {
				err = fmt.Errorf("redisadapter: close: %w", unsent)
			}
		case <-ctx.Done():
			err = fmt.Errorf("redisadapter: close: queued messages not all sent: %w", ctx.Err())
		}
		e.core.client.Close()
		<-e.core.closeNow() // what was left failed at once on the closed client
	})
	return err
}

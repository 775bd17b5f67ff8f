package redisadapter

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// emitterUID is the uid an Emitter puts in its broadcasts, as Node's
// @socket.io/redis-emitter does: no adapter has it, so every node delivers.
const emitterUID = "emitter"

// Emitter reaches the sockets of a fleet from a process that holds none: a
// job worker, a cron, an admin tool. It publishes the frames the adapter
// publishes (wire-compatible with Node's @socket.io/redis-emitter 5.x), so
// every node, Go or Node.js, delivers them. It never subscribes.
//
// An Emitter is a value: Of, To and Except return a new one that shares the
// Redis client, so one can be used from many goroutines. Close closes that
// shared client for all of them.
type Emitter struct {
	core *emitterCore
	nsp  string
	sel  selector
	err  error // an invalid namespace
}

type emitterCore struct {
	*publisher
	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

// NewEmitter connects an Emitter to Redis through c. Of opts, only Key,
// RequestTimeout (it bounds every publish), MaxMessageSize, PublishQueue
// and Logger apply; opts may be nil. Close it when done: it stops the
// goroutine that publishes. It fails with ErrConfig for an invalid connector or options, and
// with the Redis error when Redis cannot be reached or refuses the
// credentials. The Emitter starts on the root namespace "/".
func NewEmitter(ctx context.Context, c Connector, opts *Options) (*Emitter, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: connector is required", ErrConfig)
	}
	o, client, err := open(c, opts)
	if err != nil {
		return nil, err
	}
	if err := client.Do(ctx, client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, fmt.Errorf("redisadapter: ping redis: %w", err)
	}
	core := &emitterCore{publisher: newPublisher(client, c.protocol(), o, emitterUID, o.Logger.With("emitter", "redisadapter")), done: make(chan struct{})}
	return &Emitter{core: core, nsp: "/"}, nil
}

// Of returns an Emitter on namespace nsp, with no rooms selected. If nsp
// does not start with '/' or holds a '#', every method of the returned
// Emitter fails with ErrConfig.
func (e Emitter) Of(nsp string) *Emitter {
	return &Emitter{core: e.core, nsp: nsp, err: validNamespace(nsp)}
}

// To returns an Emitter that targets sockets in any of rooms (added to those
// already named).
func (e Emitter) To(rooms ...string) *Emitter {
	e.sel.Rooms = appendNew(e.sel.Rooms, rooms)
	return &e
}

// Except returns an Emitter that leaves out sockets in any of rooms.
func (e Emitter) Except(rooms ...string) *Emitter {
	e.sel.Except = appendNew(e.sel.Except, rooms)
	return &e
}

// Emit sends event with args to the selected sockets on every node. It
// returns once the message is queued, as Adapter's Emit does: the
// publishing semantics, Flush included, are the same. It returns
// ErrMessageTooLarge past MaxMessageSize, ErrPublish (wrapping the cause)
// when the queue stays full or Redis could not be reached, and ErrClosed
// after Close.
func (e Emitter) Emit(ctx context.Context, event string, args ...any) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.core.publishBroadcast(ctx, e.nsp, e.sel, event, args)
}

// SocketsJoin makes the selected sockets, on every node, join rooms.
func (e Emitter) SocketsJoin(ctx context.Context, rooms ...string) error {
	if err := e.check(); err != nil || len(rooms) == 0 {
		return err
	}
	return e.core.publishRemote(ctx, e.nsp, typeRemoteJoin, e.sel, rooms, false)
}

// SocketsLeave makes the selected sockets, on every node, leave rooms.
func (e Emitter) SocketsLeave(ctx context.Context, rooms ...string) error {
	if err := e.check(); err != nil || len(rooms) == 0 {
		return err
	}
	return e.core.publishRemote(ctx, e.nsp, typeRemoteLeave, e.sel, rooms, false)
}

// DisconnectSockets disconnects the selected sockets on every node (see
// BroadcastOperator.DisconnectSockets for what close means on a Go node).
func (e Emitter) DisconnectSockets(ctx context.Context, close bool) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.core.publishRemote(ctx, e.nsp, typeRemoteDisconnect, e.sel, nil, close)
}

// ServerSideEmit sends event to every server of the namespace (their
// OnServerSideEmit handlers, or Node's io.on). Acknowledgements are not
// supported, as in Node's emitter: an emitter is not subscribed to hear them.
// (Node's emitter has no sharded form of it; this one sends it to sharded
// fleets too.)
func (e Emitter) ServerSideEmit(ctx context.Context, event string, args ...any) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.core.publishServerSideEmit(ctx, e.nsp, event, args)
}

func (e Emitter) check() error {
	select {
	case <-e.core.done:
		return ErrClosed
	default:
		return e.err
	}
}

// Flush waits until Redis has taken every message queued before the call;
// see Adapter.Flush.
func (e Emitter) Flush(ctx context.Context) error {
	if err := e.check(); err != nil {
		return err
	}
	return e.core.flush(ctx)
}

// Close publishes what is queued (for up to RequestTimeout), then closes
// the Redis client shared by this Emitter and every one derived from it.
// Later calls return ErrClosed from every method. It returns an error
// wrapping ErrPublish when queued messages could not all be sent.
func (e Emitter) Close() error {
	var err error
	e.core.closeOnce.Do(func() {
		close(e.core.done)
		select {
		case <-e.core.closeNow():
			if unsent := e.core.takeUnreported(); unsent != nil {
				err = fmt.Errorf("redisadapter: close: %w", unsent)
			}
		case <-time.After(e.core.opts.RequestTimeout):
			err = fmt.Errorf("redisadapter: close: %w: queued messages not all sent within RequestTimeout", ErrPublish)
		}
		e.core.client.Close()
		<-e.core.closeNow() // what was left failed at once on the closed client
	})
	return err
}

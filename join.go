package redisadapter

// Join and Leave: go-socket.io does not report joins, so the room manager
// (rooms.go) finds a room joined with conn.Join by polling, within 50 to
// 200 ms, and a broadcast in that window misses the socket in the modes
// that subscribe per room. Join tells the manager at once and waits
// for Redis to confirm the subscription.

import (
	"context"
	"fmt"
	"time"

	socketio "github.com/googollee/go-socket.io"
)

// Join makes conn, a socket of this node, join rooms, and returns once this
// node receives the broadcasts to each of them: in the modes that subscribe
// per room (Cluster{Sharded: true}, and classic with RoomSubscriptions),
// once Redis confirmed the rooms' channels; in the others at once. Use it
// instead of conn.Join when the first broadcasts to a room matter: a room
// joined with conn.Join is subscribed within 50 ms (200 ms after a quiet
// while), and a broadcast in that window does not reach the socket.
//
// The socket has joined when Join returns, whatever the error: it fails
// with ErrUnknownNamespace when conn's namespace is not served, with
// ErrClosed after Close, and with ErrUnavailable (wrapping ctx's error)
// when a subscription is not confirmed before ctx ends (Redis is away: it
// is confirmed when Redis is back). Do not call it inside a ForEach
// callback (go-socket.io deadlocks). Safe for concurrent use.
func (a *Adapter) Join(ctx context.Context, conn socketio.Conn, rooms ...string) error {
	ns, err := a.namespace(conn.Namespace())
	if err != nil {
		return err
	}
	for _, room := range rooms {
		conn.Join(room)
	}
	if a.isClosed() {
		return ErrClosed
	}
	if a.rooms == nil || len(rooms) == 0 {
		return nil
	}
	j := roomJoin{ns: ns, rooms: rooms, waits: make([]chan struct{}, len(rooms))}
	for i := range j.waits {
		j.waits[i] = make(chan struct{})
	}
	a.rooms.join(j)
	for i, w := range j.waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("%w: room %q not subscribed yet: %w", ErrUnavailable, rooms[i], ctx.Err())
		case <-a.closing:
			return ErrClosed
		}
	}
	return nil
}

// Leave makes conn, a socket of this node, leave rooms; the node
// unsubscribes from a room's channel (in the modes that subscribe per room)
// once no local socket is left in it, within 200 ms (ctx is not used:
// nothing is waited for; a broadcast read meanwhile is skipped). It
// fails with ErrUnknownNamespace when conn's namespace is not served. Safe
// for concurrent use.
func (a *Adapter) Leave(ctx context.Context, conn socketio.Conn, rooms ...string) error {
	if _, err := a.namespace(conn.Namespace()); err != nil {
		return err
	}
	for _, room := range rooms {
		conn.Leave(room)
	}
	return nil
}

// connected is the OnConnect handler New installs on each namespace: it
// registers the socket, then has the manager subscribe its own id room
// (classic with RoomSubscriptions: a broadcast to one socket id goes on
// that room's channel) and waits for the confirmation, so that the
// socket's first event is handled once a broadcast to its id reaches it.
// go-socket.io has sent the client its connect packet already; the wait
// holds only this connection's first event, for a round trip, and is
// skipped while the room channels' connection is down (then bounded by
// RequestTimeout).
func (a *Adapter) connected(ns *namespace, conn socketio.Conn) error {
	err := a.local.onConnect(ns, conn)
	if a.rooms == nil || err != nil {
		return err // err: go-socket.io drops the connection
	}
	if _, ok := a.rooms.rc.roomChannel(ns.name, conn.ID(), true); !ok {
		return err // sharded: an id room has no channel
	}
	w := make(chan struct{})
	a.rooms.join(roomJoin{ns: ns, rooms: []string{conn.ID()}, waits: []chan struct{}{w}})
	if a.rooms.down.Load() > 0 {
		return err
	}
	t := time.NewTimer(a.opts.RequestTimeout)
	defer t.Stop()
	select {
	case <-w:
	case <-t.C:
	case <-a.closing:
	}
	return err
}

package redisadapter

// The sockets of this node: tracked from the connect and disconnect
// handlers, checked against go-socket.io's rooms, and selected for a
// broadcast or a request. Room membership stays in go-socket.io
// (conn.Join, server.ForEach); the adapter only snapshots it.

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	socketio "github.com/googollee/go-socket.io"
)

// localSockets are the sockets of this node, by namespace.
type localSockets struct {
	server     *socketio.Server
	uid        string                // the node's, in describe
	namespaces map[string]*namespace // fixed at New
	log        *slog.Logger
	collisions *atomic.Uint64 // Stats.IDCollisions

	idWarnOnce         sync.Once // default session ids
	connectWarnOnce    sync.Once // the server's OnConnect replaced the adapter's
	disconnectWarnOnce sync.Once // the server's OnDisconnect replaced the adapter's
}

type namespace struct {
	name  string
	proto nsProtocol // the adapter's protocol, bound to the namespace
	probe *prober    // probe.go: proves its subscription delivers; nil in an Emitter
	sent  *gapLogs   // what this node published, for gap notices (gaps.go)

	mu           sync.RWMutex
	sockets      map[string]*localSocket
	onConnect    func(socketio.Conn) error
	onDisconnect func(socketio.Conn, string)
}

func newNamespace(name string, proto nsProtocol) *namespace {
	return &namespace{name: name, proto: proto, sent: &gapLogs{}, sockets: make(map[string]*localSocket)}
}

type localSocket struct {
	conn      socketio.Conn
	connected time.Time

	mu      sync.Mutex
	data    json.RawMessage // SetData's value; nil until set
	queue   []outEvent
	queued  int // bytes of the events queued and of the batch being written
	acks    int // acknowledgements asked for and not answered yet
	pumping bool
	gone    bool

	// Guarded by the namespace's mu:
	suspect bool // found disconnected by the last sweep
	unseen  bool // tracked by a selection, its connect handler not seen yet
}

// A socket is connected, for the adapter, while it is in the room named by
// its id: go-socket.io puts it there before the connect handler runs and
// takes it out (LeaveAll) before the disconnect handler runs. A socket is
// tracked and then checked, never checked under the namespace's lock
// (go-socket.io's broadcast lock can be held for long by a slow client):
// if it left meanwhile, either onDisconnect, which runs after LeaveAll,
// removes it, or the check does. So a socket that disconnects while a
// broadcast or request is selecting it is never tracked again for good.
func (l *localSockets) connected(ns *namespace, id string) bool {
	return l.server.RoomLen(ns.name, id) > 0
}

func (l *localSockets) onConnect(ns *namespace, conn socketio.Conn) error {
	l.track(ns, conn, false)
	ns.mu.RLock()
	f := ns.onConnect
	ns.mu.RUnlock()
	if f != nil {
		return f(conn)
	}
	return nil
}

// track registers conn, once (go-socket.io may report a connect twice),
// and returns its socket, or nil for a conn no longer connected. A
// selection (bySelection) that finds a conn the connect handler has not
// registered yet marks it unseen; the connect handler clears the mark.
func (l *localSockets) track(ns *namespace, conn socketio.Conn, bySelection bool) *localSocket {
	id := conn.ID()
	if !looksGenerated(id) {
		l.collisions.Add(1)
		l.idWarnOnce.Do(func() {
			l.log.Error("socket id does not come from redisadapter.SessionIDGenerator: go-socket.io's default ids are a per-process counter that collides across nodes, so remote operations by id may reach the wrong socket",
				"id", id, "namespace", ns.name)
		})
	}
	ns.mu.Lock()
	if s := ns.sockets[id]; s != nil {
		s.unseen = s.unseen && bySelection
		ns.mu.Unlock()
		return s
	}
	s := &localSocket{conn: conn, connected: time.Now(), unseen: bySelection}
	ns.sockets[id] = s
	ns.mu.Unlock()
	if l.connected(ns, id) {
		return s
	}
	ns.mu.Lock()
	if ns.sockets[id] == s {
		delete(ns.sockets, id)
	}
	ns.mu.Unlock()
	s.drop()
	return nil
}

func (l *localSockets) onDisconnect(ns *namespace, conn socketio.Conn, reason string) {
	ns.mu.Lock()
	s := ns.sockets[conn.ID()]
	delete(ns.sockets, conn.ID())
	f := ns.onDisconnect
	ns.mu.Unlock()
	if s != nil {
		s.drop()
	}
	if f != nil {
		f(conn, reason)
	}
}

// drop stops deliveries to a socket that left.
func (s *localSocket) drop() {
	s.mu.Lock()
	s.gone, s.queue, s.queued = true, nil, 0
	s.mu.Unlock()
}

// socketFor returns the tracked socket of conn, which a room of
// go-socket.io's holds, or nil when conn is no longer connected. A
// connected conn the adapter has not seen connect is tracked from here on:
// its connect handler may be about to run (go-socket.io puts a socket in
// its room first), or someone replaced the adapter's (the sweep tells).
func (l *localSockets) socketFor(ns *namespace, conn socketio.Conn) *localSocket {
	ns.mu.RLock()
	s := ns.sockets[conn.ID()]
	ns.mu.RUnlock()
	if s != nil {
		return s
	}
	return l.track(ns, conn, true)
}

// sweepInterval is how often the sockets the adapter tracks are compared
// with go-socket.io's. A socket whose disconnect the adapter did not see
// (the server's OnDisconnect replaced the adapter's) is dropped on the
// second sweep that finds it disconnected, so that the short window between
// go-socket.io's LeaveAll and its disconnect handler is never mistaken for
// it. Likewise a socket tracked by a selection whose connect handler has not
// run by the next sweep means the server's OnConnect replaced the adapter's;
// while go-socket.io counts more connections than the adapter tracks, the
// sweep looks for such sockets itself (trackUntracked), so the mistake is
// reported within two sweeps of the first connection.
const sweepInterval = time.Second

// count is how many sockets are tracked, over every namespace.
func (l *localSockets) count() int {
	n := 0
	for _, ns := range l.namespaces {
		ns.mu.RLock()
		n += len(ns.sockets)
		ns.mu.RUnlock()
	}
	return n
}

// sweep runs sweepOnce every sweepInterval until ctx ends.
func (l *localSockets) sweep(ctx context.Context) {
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			scan := l.server.Count() > l.count()
			for _, ns := range l.namespaces {
				if scan {
					l.trackUntracked(ns)
				}
				l.sweepOnce(ns)
			}
		case <-ctx.Done():
			return
		}
	}
}

// trackUntracked tracks, as a selection would (marked unseen), the
// sockets of ns connected without the adapter seeing it: those in the
// room named by their own id and not tracked. The sweep then reports the
// connect handler that never ran even if no room lookup ever finds them
// (an app that only broadcasts namespace-wide), and namespace-wide
// broadcasts reach them. The sweep calls it only while go-socket.io counts
// more connections than the adapter tracks.
func (l *localSockets) trackUntracked(ns *namespace) {
	rooms := l.server.Rooms(ns.name)
	ns.mu.RLock()
	candidates := rooms[:0]
	for _, room := range rooms {
		if _, tracked := ns.sockets[room]; !tracked {
			candidates = append(candidates, room)
		}
	}
	ns.mu.RUnlock()
	var found []socketio.Conn
	for _, room := range candidates {
		// Collected first: tracking checks go-socket.io's rooms, which
		// must not be done under ForEach's lock.
		l.server.ForEach(ns.name, room, func(c socketio.Conn) {
			if c.ID() == room {
				found = append(found, c)
			}
		})
	}
	for _, c := range found {
		l.socketFor(ns, c)
	}
}

// sweepOnce drops the tracked sockets of ns found disconnected twice in a
// row, and reports connect handlers that never ran.
func (l *localSockets) sweepOnce(ns *namespace) {
	ns.mu.RLock()
	all := make([]*localSocket, 0, len(ns.sockets))
	for _, s := range ns.sockets {
		all = append(all, s)
	}
	ns.mu.RUnlock()
	left := make(map[*localSocket]bool)
	for _, s := range all {
		if !l.connected(ns, s.conn.ID()) {
			left[s] = true
		}
	}
	dropped, unseen := 0, 0
	ns.mu.Lock()
	for _, s := range all {
		switch {
		case ns.sockets[s.conn.ID()] != s: // onDisconnect came meanwhile
		case !left[s]:
			s.suspect = false
			// Tracked by this sweep (trackUntracked), a socket whose
			// connect handler is about to run is unseen too: it is
			// given until the next sweep.
			if s.unseen && time.Since(s.connected) >= sweepInterval {
				unseen++
			}
		case !s.suspect:
			s.suspect = true
		default:
			delete(ns.sockets, s.conn.ID())
			s.drop()
			dropped++
		}
	}
	ns.mu.Unlock()
	if dropped > 0 {
		l.disconnectWarnOnce.Do(func() {
			l.log.Error("sockets left without the adapter seeing it: register disconnect handlers with a.Of(nsp).OnDisconnect, not the server's OnDisconnect, which replaces the adapter's (or a socket called LeaveAll, which takes it out of its own room too)",
				"namespace", ns.name, "sockets", dropped)
		})
	}
	if unseen > 0 {
		l.connectWarnOnce.Do(func() {
			l.log.Error("sockets connected without the adapter seeing it: register connect handlers with a.Of(nsp).OnConnect, not the server's OnConnect, which replaces the adapter's",
				"namespace", ns.name, "sockets", unseen)
		})
	}
}

// selectLocal returns this node's sockets matched by sel, each once. For
// a broadcast: a namespace-wide selection may hold a socket that has just
// left (writing to it fails quietly); requests use selectConnected.
func (l *localSockets) selectLocal(ns *namespace, sel selector) []*localSocket {
	if len(sel.Rooms) == 0 {
		ns.mu.RLock()
		out := make([]*localSocket, 0, len(ns.sockets))
		for _, s := range ns.sockets {
			out = append(out, s)
		}
		ns.mu.RUnlock()
		return l.except(ns, out, sel.Except)
	}
	list := connLists.Get().(*connList)
	defer list.release()
	switch {
	case len(sel.Rooms) == 1:
		l.server.ForEach(ns.name, sel.Rooms[0], list.add)
	default:
		seen := make(map[string]struct{})
		for _, room := range sel.Rooms {
			l.server.ForEach(ns.name, room, func(c socketio.Conn) {
				if _, dup := seen[c.ID()]; !dup {
					seen[c.ID()] = struct{}{}
					list.add(c)
				}
			})
		}
	}
	out := make([]*localSocket, 0, len(list.conns))
	for _, c := range list.conns {
		if s := l.socketFor(ns, c); s != nil {
			out = append(out, s)
		}
	}
	return l.except(ns, out, sel.Except)
}

// connList collects the conns of a room (go-socket.io's ForEach), reused
// (connLists): a broadcast to a room would otherwise grow a slice, and
// make a closure, each time.
type connList struct {
	conns []socketio.Conn
	add   func(socketio.Conn) // appends to conns; made once, with the list
}

var connLists = sync.Pool{New: func() any {
	l := new(connList)
	l.add = func(c socketio.Conn) { l.conns = append(l.conns, c) }
	return l
}}

// maxPooledConns keeps one huge room from pinning its slice in the pool.
const maxPooledConns = 4096

// release empties l and puts it back in the pool.
func (l *connList) release() {
	clear(l.conns)
	l.conns = l.conns[:0]
	if cap(l.conns) <= maxPooledConns {
		connLists.Put(l)
	}
}

// selectConnected is selectLocal without the sockets that are no longer
// connected: what requests report and act on.
func (l *localSockets) selectConnected(ns *namespace, sel selector) []*localSocket {
	out := l.selectLocal(ns, sel)
	kept := out[:0]
	for _, s := range out {
		if l.connected(ns, s.conn.ID()) {
			kept = append(kept, s)
		}
	}
	return kept
}

// except removes from sockets those in any of the rooms.
func (l *localSockets) except(ns *namespace, sockets []*localSocket, rooms []string) []*localSocket {
	if len(rooms) == 0 || len(sockets) == 0 {
		return sockets
	}
	excluded := make(map[string]struct{})
	for _, room := range rooms {
		l.server.ForEach(ns.name, room, func(c socketio.Conn) { excluded[c.ID()] = struct{}{} })
	}
	kept := sockets[:0]
	for _, s := range sockets {
		if _, ok := excluded[s.conn.ID()]; !ok {
			kept = append(kept, s)
		}
	}
	return kept
}

// hasLocalRoom reports whether any local socket is in room.
func (l *localSockets) hasLocalRoom(ns *namespace, room string) bool {
	return l.server.RoomLen(ns.name, room) > 0
}

// describe returns the RemoteSocket view of a local socket.
func (l *localSockets) describe(s *localSocket) RemoteSocket {
	s.mu.Lock()
	data := s.data
	s.mu.Unlock()
	if data == nil {
		data = json.RawMessage("{}") // Node's socket.data starts as {}
	}
	rooms := s.conn.Rooms()
	if rooms == nil {
		rooms = []string{}
	}
	return RemoteSocket{
		ID:        s.conn.ID(),
		Handshake: handshakeOf(s.conn, s.connected),
		Rooms:     rooms,
		Data:      data,
		Node:      l.uid,
	}
}

package redisadapter

// Local delivery: the sockets of this node and the per-socket queues that
// keep one slow client from stalling the rest.
//
// Room membership stays in go-socket.io (conn.Join, server.ForEach); the
// adapter only snapshots it. go-socket.io's own Send/SendAll call Emit while
// holding the namespace lock and Emit blocks until the client's writer takes
// the packet, so the adapter never emits under that lock: it collects the
// target Conns, then hands each event to the socket's queue, drained by a
// goroutine that exists only while the queue is not empty.
//
// A broadcast is encoded once: its socket.io packet is built here and
// written as a frame straight to each socket's engine.io connection,
// instead of going through go-socket.io's Emit, which encodes the packet
// again for every socket and hands it to the connection's writer goroutine.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio/session"
	"github.com/googollee/go-socket.io/parser"
)

type namespace struct {
	name string

	mu           sync.RWMutex
	sockets      map[string]*localSocket
	onConnect    func(socketio.Conn) error
	onDisconnect func(socketio.Conn, string)
}

func newNamespace(name string) *namespace {
	return &namespace{name: name, sockets: make(map[string]*localSocket)}
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

type outEvent struct {
	event  string
	args   []any
	packet []byte                // the socket.io packet of event and args; nil: left to Emit
	ack    func(json.RawMessage) // the client's acknowledgement, for broadcasts that want one
}

// size is what ev counts against a socket's queue: its packet (shared by
// every socket it goes to, counted for each, so the bound holds however
// the packets are shared) and the queue entry itself. An event left to
// Emit counts its encoded arguments and binary attachments instead.
func (ev outEvent) size() int {
	const entry = 80 // an outEvent in the queue's slice, with its slice headers
	if ev.packet != nil {
		return entry + len(ev.packet)
	}
	n := entry + len(ev.event)
	for _, arg := range ev.args {
		switch v := arg.(type) {
		case encodedArg:
			n += len(v.json)
		case parser.Buffer:
			n += len(v.Data)
		case *parser.Buffer:
			n += len(v.Data)
		}
	}
	return n
}

// A socket is connected, for the adapter, while it is in the room named by
// its id: go-socket.io puts it there before the connect handler runs and
// takes it out (LeaveAll) before the disconnect handler runs. A socket is
// tracked and then checked, never checked under the namespace's lock
// (go-socket.io's broadcast lock can be held for long by a slow client):
// if it left meanwhile, either onDisconnect, which runs after LeaveAll,
// removes it, or the check does. So a socket that disconnects while a
// broadcast or request is selecting it is never tracked again for good.
func (a *Adapter) connected(ns *namespace, id string) bool {
	return a.server.RoomLen(ns.name, id) > 0
}

func (a *Adapter) onConnect(ns *namespace, conn socketio.Conn) error {
	a.track(ns, conn, false)
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
func (a *Adapter) track(ns *namespace, conn socketio.Conn, bySelection bool) *localSocket {
	id := conn.ID()
	if !looksGenerated(id) {
		a.stats.collisions.Add(1)
		a.idWarnOnce.Do(func() {
			a.log.Error("socket id does not come from redisadapter.SessionIDGenerator: go-socket.io's default ids are a per-process counter that collides across nodes, so remote operations by id may reach the wrong socket",
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
	if a.connected(ns, id) {
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

func (a *Adapter) onDisconnect(ns *namespace, conn socketio.Conn, reason string) {
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
func (a *Adapter) socketFor(ns *namespace, conn socketio.Conn) *localSocket {
	ns.mu.RLock()
	s := ns.sockets[conn.ID()]
	ns.mu.RUnlock()
	if s != nil {
		return s
	}
	return a.track(ns, conn, true)
}

// sweepInterval is how often the sockets the adapter tracks are compared
// with go-socket.io's. A socket whose disconnect the adapter did not see
// (the server's OnDisconnect replaced the adapter's) is dropped on the
// second sweep that finds it disconnected, so that the short window between
// go-socket.io's LeaveAll and its disconnect handler is never mistaken for
// it. Likewise a socket tracked by a selection whose connect handler has not
// run by the next sweep means the server's OnConnect replaced the adapter's.
const sweepInterval = time.Second

// sweep runs sweepOnce every sweepInterval until ctx ends.
func (a *Adapter) sweep(ctx context.Context) {
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			for _, ns := range a.namespaces {
				a.sweepOnce(ns)
			}
		case <-ctx.Done():
			return
		}
	}
}

// sweepOnce drops the tracked sockets of ns found disconnected twice in a
// row, and reports connect handlers that never ran.
func (a *Adapter) sweepOnce(ns *namespace) {
	ns.mu.RLock()
	all := make([]*localSocket, 0, len(ns.sockets))
	for _, s := range ns.sockets {
		all = append(all, s)
	}
	ns.mu.RUnlock()
	left := make(map[*localSocket]bool)
	for _, s := range all {
		if !a.connected(ns, s.conn.ID()) {
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
			if s.unseen {
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
		a.disconnectWarnOnce.Do(func() {
			a.log.Error("sockets left without the adapter seeing it: register disconnect handlers with Adapter.OnDisconnect, not the server's OnDisconnect, which replaces the adapter's (or a socket called LeaveAll, which takes it out of its own room too)",
				"namespace", ns.name, "sockets", dropped)
		})
	}
	if unseen > 0 {
		a.connectWarnOnce.Do(func() {
			a.log.Error("sockets connected without the adapter seeing it: register connect handlers with Adapter.OnConnect, not the server's OnConnect, which replaces the adapter's",
				"namespace", ns.name, "sockets", unseen)
		})
	}
}

// selectLocal returns this node's sockets matched by sel, each once. For
// a broadcast: a namespace-wide selection may hold a socket that has just
// left (writing to it fails quietly); requests use selectConnected.
func (a *Adapter) selectLocal(ns *namespace, sel selector) []*localSocket {
	if len(sel.Rooms) == 0 {
		ns.mu.RLock()
		out := make([]*localSocket, 0, len(ns.sockets))
		for _, s := range ns.sockets {
			out = append(out, s)
		}
		ns.mu.RUnlock()
		return a.except(ns, out, sel.Except)
	}
	var conns []socketio.Conn
	switch {
	case len(sel.Rooms) == 1:
		a.server.ForEach(ns.name, sel.Rooms[0], func(c socketio.Conn) { conns = append(conns, c) })
	default:
		seen := make(map[string]struct{})
		for _, room := range sel.Rooms {
			a.server.ForEach(ns.name, room, func(c socketio.Conn) {
				if _, dup := seen[c.ID()]; !dup {
					seen[c.ID()] = struct{}{}
					conns = append(conns, c)
				}
			})
		}
	}
	out := make([]*localSocket, 0, len(conns))
	for _, c := range conns {
		if s := a.socketFor(ns, c); s != nil {
			out = append(out, s)
		}
	}
	return a.except(ns, out, sel.Except)
}

// selectConnected is selectLocal without the sockets that are no longer
// connected: what requests report and act on.
func (a *Adapter) selectConnected(ns *namespace, sel selector) []*localSocket {
	out := a.selectLocal(ns, sel)
	kept := out[:0]
	for _, s := range out {
		if a.connected(ns, s.conn.ID()) {
			kept = append(kept, s)
		}
	}
	return kept
}

// except removes from sockets those in any of the rooms.
func (a *Adapter) except(ns *namespace, sockets []*localSocket, rooms []string) []*localSocket {
	if len(rooms) == 0 || len(sockets) == 0 {
		return sockets
	}
	excluded := make(map[string]struct{})
	for _, room := range rooms {
		a.server.ForEach(ns.name, room, func(c socketio.Conn) { excluded[c.ID()] = struct{}{} })
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
func (a *Adapter) hasLocalRoom(ns *namespace, room string) bool {
	return a.server.RoomLen(ns.name, room) > 0
}

// deliver queues event to every local socket matched by sel.
func (a *Adapter) deliver(ns *namespace, sel selector, event string, args []any) {
	a.deliverTo(ns, a.selectLocal(ns, sel), event, args)
}

// deliverTo queues event to each of targets.
func (a *Adapter) deliverTo(ns *namespace, targets []*localSocket, event string, args []any) {
	if len(targets) == 0 {
		return // nothing to encode for
	}
	args = emittable(args)
	ev := outEvent{event: event, args: args, packet: eventPacket(ns.name, event, args)}
	for _, s := range targets {
		a.enqueue(s, ev)
	}
}

// eventPacket is the text of the socket.io EVENT packet that go-socket.io's
// Emit writes for event and args (as emittable returns them) in namespace
// nsp, or nil when an argument is binary or did not encode: those are left
// to Emit.
func eventPacket(nsp, event string, args []any) []byte {
	name, _ := json.Marshal(event) // a string always encodes
	b := make([]byte, 0, 64)
	b = append(b, '0'+byte(parser.Event))
	if nsp != "/" {
		b = append(b, nsp...)
		b = append(b, ',')
	}
	b = append(b, '[')
	b = append(b, name...)
	for _, arg := range args {
		e, ok := arg.(encodedArg)
		if !ok {
			return nil
		}
		b = append(b, ',')
		b = append(b, e.json...)
	}
	return append(b, ']')
}

// frameWriter is the engine.io connection under a go-socket.io Conn: its
// conns embed engineio.Conn, so NextWriter is promoted. NextWriter holds
// the connection's write lock until the writer is closed, so frames written
// here and by go-socket.io's own writer never interleave.
type frameWriter interface {
	NextWriter(session.FrameType) (io.WriteCloser, error)
}

// writeFrame writes packet to fw as one text frame. An error means the
// connection is closing; the frame is dropped, as Emit drops it.
func writeFrame(fw frameWriter, packet []byte) {
	w, err := fw.NextWriter(session.TEXT)
	if err != nil {
		return
	}
	_, _ = w.Write(packet)
	_ = w.Close()
}

// encodedArg is an argument already encoded as JSON. go-socket.io encodes
// every argument again for every socket it emits to (reflection, sorted map
// keys); encoding once per broadcast and handing it the bytes makes a room
// of many sockets cost one encoding. The text sits in a string field: the
// parser walks slices element by element looking for binary attachments.
type encodedArg struct{ json string }

func (e encodedArg) MarshalJSON() ([]byte, error) { return []byte(e.json), nil }

// emittable encodes args once for every socket they go to. It also keeps
// nil arguments from go-socket.io's Emit, which panics on them
// (reflect.ValueOf(nil) is not a valid value): they become null. Binary
// attachments (parser.Buffer) are left to go-socket.io.
func emittable(args []any) []any {
	out := make([]any, len(args))
	for i, v := range args {
		switch v.(type) {
		case parser.Buffer, *parser.Buffer:
			out[i] = v
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			out[i] = v // go-socket.io reports the error on the socket, as before
			continue
		}
		out[i] = encodedArg{string(b)}
	}
	return out
}

// enqueue adds ev to s's queue, starting its drain if idle. An event that
// would take the queue past Options.SocketQueue bytes is dropped: the socket
// is not reading fast enough, and waiting for it would stall every other
// socket of the node. An empty queue takes any event, so a bound smaller
// than one event does not silence the socket.
func (a *Adapter) enqueue(s *localSocket, ev outEvent) {
	n := ev.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	if s.queued > 0 && s.queued+n > a.opts.SocketQueue {
		a.stats.slowSocket.Add(1)
		return
	}
	s.queue = append(s.queue, ev)
	s.queued += n
	if !s.pumping {
		s.pumping = a.spawn(func() { a.drain(s) })
	}
}

// drain emits s's queued events in order, and returns when the queue is
// empty, the socket is gone or the adapter is closing. A batch being
// written still counts against the bound: its events are still in memory.
func (a *Adapter) drain(s *localSocket) {
	written := 0
	for {
		s.mu.Lock()
		if !s.gone {
			s.queued -= written
		}
		batch := s.queue
		if len(batch) == 0 || s.gone || a.isClosed() {
			s.queue, s.pumping = nil, false
			s.mu.Unlock()
			return
		}
		s.queue = nil
		s.mu.Unlock()
		written = 0
		for _, ev := range batch {
			a.emit(s, ev)
			written += ev.size()
		}
	}
}

// emit writes ev's packet to the socket's connection, or calls Emit, which
// blocks until the client's writer takes the packet and returns when the
// connection closes. A panic inside go-socket.io must not take the node down
// with it.
func (a *Adapter) emit(s *localSocket, ev outEvent) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("go-socket.io panicked emitting an event", "event", ev.event, "id", s.conn.ID(), "panic", fmt.Sprint(r))
		}
	}()
	if fw, ok := s.conn.(frameWriter); ok && ev.packet != nil && ev.ack == nil {
		writeFrame(fw, ev.packet)
		return
	}
	if ev.ack == nil {
		s.conn.Emit(ev.event, ev.args...)
		return
	}
	// go-socket.io keeps an ack callback until the client answers or
	// disconnects, with no deadline: a client that never answers would
	// make it hold one per call for as long as it stays connected.
	s.mu.Lock()
	full := s.acks >= maxPendingAcks
	if !full {
		s.acks++
	}
	s.mu.Unlock()
	if full {
		s.conn.Emit(ev.event, ev.args...) // delivered, not asked for: counted as not answering
		return
	}
	// go-socket.io numbers acks with a plain counter of the connection,
	// shared by its namespaces: acked emits on one connection take turns.
	unlock := a.ackTurns.lock(s.conn.ID())
	defer unlock()
	s.conn.Emit(ev.event, append(ev.args[:len(ev.args):len(ev.args)], func(v json.RawMessage) {
		s.mu.Lock()
		s.acks--
		s.mu.Unlock()
		ev.ack(v)
	})...)
}

// maxPendingAcks bounds the acknowledgements one socket owes the adapter:
// past it, events that want one reach the socket without asking for it.
const maxPendingAcks = 64

// connTurns serializes the acked emits of each connection. go-socket.io's
// Conn.Emit takes the ack id from an unsynchronized counter of the
// connection (conn.nextID: id++) and stores the callback under it: two at
// once race, and may share an id, so that one callback replaces the other.
// Every acked emit the adapter makes (EmitWithAck, and other nodes'
// broadcasts with acknowledgements) goes through lock, whatever the
// namespace. A connection's entry lives while an emit holds or waits for it.
type connTurns struct {
	mu sync.Mutex
	m  map[string]*connTurn
}

type connTurn struct {
	sync.Mutex
	users int // holders and waiters; guarded by connTurns.mu
}

// lock waits for the turn of connection id and returns its unlock.
func (t *connTurns) lock(id string) (unlock func()) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]*connTurn)
	}
	c := t.m[id]
	if c == nil {
		c = &connTurn{}
		t.m[id] = c
	}
	c.users++
	t.mu.Unlock()
	c.Lock()
	return func() {
		c.Unlock()
		t.mu.Lock()
		if c.users--; c.users == 0 {
			delete(t.m, id)
		}
		t.mu.Unlock()
	}
}

// describe returns the RemoteSocket view of a local socket.
func (a *Adapter) describe(s *localSocket) RemoteSocket {
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
		Node:      a.uid,
	}
}

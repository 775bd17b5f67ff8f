package redisadapter

// Local delivery: the per-socket queues that keep one slow client from
// stalling the rest.
//
// go-socket.io's own Send/SendAll call Emit while holding the namespace lock
// and Emit blocks until the client's writer takes the packet, so the adapter
// never emits under that lock: it collects the target Conns, then hands each
// event to the socket's queue, drained by a goroutine that exists only while
// the queue is not empty.
//
// A broadcast is encoded once: its socket.io packet is built here and
// written as a frame straight to each socket's engine.io connection,
// instead of going through go-socket.io's Emit, which encodes the packet
// again for every socket and hands it to the connection's writer goroutine.
//
// A drain writes the events it took from the queue as one run: on a
// websocket connection of ClientLimits.Transports, the first frame corks
// the connection (corkconn.go) and the run's frames, with whatever
// go-socket.io wrote meanwhile, leave in one write when the run ends.

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/googollee/go-socket.io/engineio/session"
	"github.com/googollee/go-socket.io/parser"
)

// handleBroadcast delivers a broadcast from another node to local sockets.
func (a *Adapter) handleBroadcast(in inbound) {
	m, ns := in.PubSubMessage, in.ns
	// As in Node: a room channel with no local member is not even decoded.
	if room := ns.proto.roomOf(m.Channel); room != "" && !a.local.hasLocalRoom(ns, room) {
		return
	}
	f, req, err := ns.proto.decodeBroadcast(m.Message)
	if err != nil {
		a.in.dropped(m, err)
		return
	}
	if req != nil {
		// The sharded protocols send requests on the broadcast channel.
		in.req = req
		a.in.route(toRequests, in)
		return
	}
	if f.uid == a.uid || f.nsp != ns.name {
		return
	}
	targets := a.local.selectLocal(ns, f.sel)
	if len(targets) == 0 {
		return // its arguments are not even decoded
	}
	args, err := f.arguments()
	if err != nil {
		a.in.dropped(m, err)
		return
	}
	a.deliverTo(ns, targets, f.event, args)
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

// deliver queues event to every local socket matched by sel.
func (a *Adapter) deliver(ns *namespace, sel selector, event string, args []any) {
	a.deliverTo(ns, a.local.selectLocal(ns, sel), event, args)
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

// writeFrame writes packet to fw as one text frame, part of run (nil: a
// frame alone). An error means the connection is closing; the frame is
// dropped, as Emit drops it.
func writeFrame(fw frameWriter, packet []byte, run *frameRun) {
	w, err := fw.NextWriter(session.TEXT)
	if err != nil {
		return
	}
	defer w.Close() // even if Write panics: the writer holds the connection's write lock
	run.add(w)
	_, _ = w.Write(packet)
}

// frameRun is a run of frames written to one socket's connection: its
// first frame corks the connection, if it is one of ClientLimits's
// websockets, until end.
type frameRun struct{ corked *corkConn }

// add corks the connection of w, the writer of a frame of r, unless r
// corked it already. It runs while w holds the connection's write lock,
// before anything of w's frame is written.
func (r *frameRun) add(w io.Writer) {
	if r == nil || r.corked != nil {
		return
	}
	if ww, ok := w.(*wsWriter); ok {
		r.corked = ww.c.cork
		r.corked.cork()
	}
}

// end writes what the run held back. A failed write closed the
// connection, as go-socket.io's own failed writes leave it closing.
func (r *frameRun) end() {
	if r != nil && r.corked != nil {
		_ = r.corked.uncork()
		r.corked = nil
	}
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
		var run *frameRun
		if len(batch) > 1 {
			run = &frameRun{}
		}
		for _, ev := range batch {
			a.emit(s, ev, run)
			written += ev.size()
		}
		run.end()
	}
}

// emit writes ev's packet to the socket's connection as a frame of run, or
// calls Emit, which blocks until the client's writer takes the packet and
// returns when the connection closes. A panic inside go-socket.io must not
// take the node down with it.
func (a *Adapter) emit(s *localSocket, ev outEvent, run *frameRun) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("go-socket.io panicked emitting an event", "event", ev.event, "id", s.conn.ID(), "panic", fmt.Sprint(r))
		}
	}()
	if fw, ok := s.conn.(frameWriter); ok && ev.packet != nil && ev.ack == nil {
		writeFrame(fw, ev.packet, run)
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

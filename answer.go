package redisadapter

// The answering side of requests between nodes: applying a join, leave or
// disconnect, and answering fetches, server-side emits and broadcasts with
// acknowledgements.

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// serverSideHandlers are the handlers of ServerSideEmit events, by
// namespace and event.
type serverSideHandlers struct {
	mu sync.RWMutex
	m  map[string]ServerSideHandler // key: nsp + "\x00" + event
}

func (hs *serverSideHandlers) set(nsp, event string, h ServerSideHandler) {
	hs.mu.Lock()
	hs.m[nsp+"\x00"+event] = h
	hs.mu.Unlock()
}

func (hs *serverSideHandlers) get(nsp, event string) ServerSideHandler {
	hs.mu.RLock()
	defer hs.mu.RUnlock()
	return hs.m[nsp+"\x00"+event]
}

// handleRequest answers or applies a request from another node. A request
// for a namespace this node does not serve never gets here: the node does
// not subscribe to its channel.
func (a *Adapter) handleRequest(in inbound) {
	m, ns := in.PubSubMessage, in.ns
	var r request
	if in.req != nil {
		r = *in.req
	} else {
		var err error
		if r, err = ns.proto.decodeRequest(m.Message); err != nil {
			a.in.dropped(m, err)
			return
		}
	}
	if r.nsp != "" && r.nsp != ns.name {
		return
	}
	if r.uid == a.uid {
		// Node applies its own join/leave/disconnect when they come back;
		// this adapter applied them before publishing.
		return
	}
	switch r.typ {
	case typeSockets:
		ids := []string{}
		for _, s := range a.local.selectConnected(ns, selector{Rooms: r.rooms}) {
			ids = append(ids, s.conn.ID())
		}
		a.respond(ns, r, answer{ids: ids})
	case typeAllRooms:
		a.respond(ns, r, answer{rooms: a.server.Rooms(ns.name)})
	case typeRemoteJoin, typeRemoteLeave, typeRemoteDisconnect:
		// The legacy per-socket form is answered by the node holding the socket.
		if r.legacy && len(a.local.selectConnected(ns, r.sel)) == 0 {
			return
		}
		a.applyLocal(ns, r.typ, r.sel, r.rooms, r.close)
		if r.legacy {
			a.respond(ns, r, answer{})
		}
	case typeRemoteFetch:
		sockets := []RemoteSocket{}
		for _, s := range a.local.selectConnected(ns, r.sel) {
			sockets = append(sockets, a.local.describe(s))
		}
		a.respond(ns, r, answer{sockets: sockets})
	case typeServerSideEmit:
		a.serveServerSideEmit(ns, r)
	case typeBroadcast:
		a.serveBroadcastWithAck(ns, r)
	case typeGap:
		a.countGap(ns, r, in.at)
	default:
		a.in.dropped(m, fmt.Errorf("%w: unknown request type %d", errMalformed, r.typ))
	}
}

// applyLocal joins, leaves or disconnects the local sockets matched by sel.
// Join and Leave are called outside go-socket.io's ForEach: inside it they
// deadlock.
func (a *Adapter) applyLocal(ns *namespace, typ requestType, sel selector, rooms []string, closeConn bool) {
	sockets := a.local.selectConnected(ns, sel)
	if typ == typeRemoteJoin && len(sockets) > 0 && a.rooms != nil {
		// Once the sockets joined (the manager reads the rooms later):
		// their channels are subscribed now rather than at the next poll.
		defer a.rooms.join(roomJoin{ns: ns, rooms: rooms})
	}
	for _, s := range sockets {
		switch typ {
		case typeRemoteJoin:
			for _, room := range rooms {
				s.conn.Join(room)
			}
			// go-socket.io's Join does not check that the socket is still
			// connected: one that left since it was selected would stay in
			// the rooms for good. Checked after the Join, the order of
			// go-socket.io's LeaveAll and this Join does not matter.
			if !a.local.connected(ns, s.conn.ID()) {
				for _, room := range rooms {
					s.conn.Leave(room)
				}
			}
		case typeRemoteLeave:
			for _, room := range rooms {
				s.conn.Leave(room)
			}
		case typeRemoteDisconnect:
			// go-socket.io has no namespace-only disconnect: close either way.
			_ = s.conn.Close()
		}
	}
}

// serveServerSideEmit calls the registered handler and, when the sender
// wants an acknowledgement, answers with what it returned. Without a
// handler there is no answer, as in Node.
func (a *Adapter) serveServerSideEmit(ns *namespace, r request) {
	h := a.handlers.get(ns.name, r.event)
	if h == nil {
		return
	}
	ack, ok := a.callHandler(h, r.event, r.args)
	if !ok || r.id == "" {
		return
	}
	ackJSON, err := json.Marshal(ack)
	if err != nil {
		a.log.Error("serverSideEmit handler returned a value JSON cannot encode", "event", r.event, "err", err)
		return
	}
	a.respond(ns, r, answer{ack: ackJSON})
}

func (a *Adapter) callHandler(h ServerSideHandler, event string, args []json.RawMessage) (ack any, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("serverSideEmit handler panicked", "event", event, "panic", fmt.Sprint(p))
			ok = false
		}
	}()
	return h(args), true
}

// serveBroadcastWithAck delivers a broadcast that wants acknowledgements
// (Node's emitWithAck / timeout().emit(..., cb)), answers with how many
// local clients got it, then with each client's acknowledgement.
func (a *Adapter) serveBroadcastWithAck(ns *namespace, r request) {
	f := r.frame
	if f.event == "" || f.nsp != ns.name {
		a.stats.malformed.Add(1)
		return
	}
	args, err := f.arguments()
	if err != nil {
		a.stats.malformed.Add(1)
		return
	}
	targets := a.local.selectConnected(ns, f.sel)
	a.respond(ns, r, answer{typ: typeBroadcastClientCount, clientCount: len(targets)})
	args = emittable(args)
	for _, s := range targets {
		a.enqueue(s, outEvent{event: f.event, args: args, ack: func(raw json.RawMessage) {
			a.respond(ns, r, answer{typ: typeBroadcastAck, ack: raw})
		}})
	}
}

// respond publishes an answer to r, in the protocol's form.
func (a *Adapter) respond(ns *namespace, r request, ans answer) {
	m, err := ns.proto.encodeAnswer(r, ans)
	if err == nil {
		err = a.pub.publishAnswer(context.Background(), ns.proto, m)
	}
	if err != nil {
		a.log.Warn("answer not sent", "type", r.typ, "err", err)
	}
}

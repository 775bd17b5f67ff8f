package redisadapter

// The classic protocol: the wire format of @socket.io/redis-adapter 8.x's
// createAdapter (PUBLISH/SUBSCRIBE), followed exactly so Go and Node.js servers can share
// one Redis:
//
//   - broadcasts: msgpack [uid, packet, opts] on "<key>#<nsp>#" or, for
//     exactly one room, "<key>#<nsp>#<room>#"; packet is
//     {type: 2, data: [event, ...args], nsp}, opts is
//     {rooms: [...], except: [...], flags: {}};
//   - requests: JSON {uid, requestId, type, ...} on "<key>-request#<nsp>#"
//     (type 7 is msgpack);
//   - answers: JSON {requestId, ...} on "<key>-response#<nsp>#" or on the
//     requester's own "<key>-response#<nsp>#<uid>#" (type 9 is msgpack).
//
// Every decoder here returns an error for input it cannot use; none panics.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"
)

// encodeClassicBroadcast encodes [uid, {type, data: [event, ...args], nsp}, {rooms, except, flags}].
func encodeClassicBroadcast(uid, nsp string, sel selector, event string, args []any) ([]byte, error) {
	e := encoders.Get().(*encoderBuffer)
	defer func() {
		if e.buf.Cap() <= maxPooledBuffer {
			e.buf.Reset()
			encoders.Put(e)
		}
	}()
	enc := e.enc
	err := errors.Join(
		enc.EncodeArrayLen(3),
		enc.EncodeString(uid),
		encodePacket(enc, nsp, event, args),
		encodeOpts(enc, sel, 0),
	)
	if err != nil {
		return nil, errorf("encode %q: %w", event, err)
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// encodeBroadcastRequest encodes a broadcast that wants acknowledgements
// (request type 7) as Node does, in msgpack: {uid, requestId, type,
// packet, opts}.
func encodeBroadcastRequest(r request) ([]byte, error) {
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	f := r.frame
	err := errors.Join(
		enc.EncodeMapLen(5),
		enc.EncodeString("uid"), enc.EncodeString(r.uid),
		enc.EncodeString("requestId"), enc.EncodeString(r.id),
		enc.EncodeString("type"), enc.EncodeInt(int64(typeBroadcast)),
		enc.EncodeString("packet"), encodePacket(enc, f.nsp, f.event, f.args),
		enc.EncodeString("opts"), encodeOpts(enc, f.sel, r.ackTimeout.Milliseconds()),
	)
	if err != nil {
		return nil, errorf("encode %q: %w", f.event, err)
	}
	return buf.Bytes(), nil
}

// decodeClassicBroadcast decodes a broadcast frame. A missing packet nsp means "/".
func decodeClassicBroadcast(msg string) (broadcastFrame, error) {
	var f broadcastFrame
	dec := newDecoder(msg)
	defer dec.release()
	n, err := dec.DecodeArrayLen()
	if err != nil || n != 3 {
		return f, malformed("broadcast is not a 3-element array")
	}
	if f.uid, err = dec.str(); err != nil {
		return f, malformed("broadcast uid: %v", err)
	}
	typ, err := decodePacket(dec, &f, true)
	if err != nil {
		return f, err
	}
	if typ != packetEvent && typ != packetBinaryEvent {
		return f, malformed("broadcast packet type %d", typ)
	}
	if f.sel, err = decodeSelector(dec); err != nil {
		return f, err
	}
	if _, err := dec.PeekCode(); err == nil {
		return f, malformed("trailing bytes after broadcast")
	}
	return f, nil
}

// decodeClassicRequest decodes a request: JSON when it starts with '{',
// else msgpack (Node sends type 7 that way).
func decodeClassicRequest(msg string) (request, error) {
	if !strings.HasPrefix(msg, "{") {
		return decodeMsgpackRequest(msg)
	}
	var w classicRequest
	if err := json.Unmarshal([]byte(msg), &w); err != nil {
		return request{}, malformed("request: %v", err)
	}
	r := request{uid: w.UID, id: w.RequestID, typ: w.Type, rooms: w.Rooms, close: w.Close != nil && *w.Close}
	switch {
	case w.Type == typeServerSideEmit:
		var err error
		if r.event, r.args, err = decodeEventArgs(w.Data); err != nil {
			return r, err
		}
	case w.Type == typeGap:
		var g gapData
		if err := json.Unmarshal(w.Data, &g); err != nil {
			return r, malformed("gap notice: %v", err)
		}
		var err error
		if r.gapSince, r.gapUntil, err = g.span(); err != nil {
			return r, err
		}
		r.gapRooms = g.RoomChannels
	case w.Opts != nil:
		r.sel = selector{Rooms: w.Opts.Rooms, Except: w.Opts.Except}
	case w.Type == typeRemoteJoin || w.Type == typeRemoteLeave || w.Type == typeRemoteDisconnect:
		if w.SID == "" {
			return r, malformed("%s without opts or sid", w.Type)
		}
		r.legacy, r.sel, r.rooms = true, selector{Rooms: []string{w.SID}}, []string{w.Room}
	}
	return r, nil
}

// decodeMsgpackRequest decodes the msgpack map {uid, requestId, type, packet, opts}.
func decodeMsgpackRequest(msg string) (request, error) {
	var r request
	dec := newDecoder(msg)
	defer dec.release()
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return r, malformed("request is neither JSON nor a msgpack map")
	}
	r.typ = -1
	for range n {
		key, err := dec.str()
		if err != nil {
			return r, malformed("request key: %v", err)
		}
		switch key {
		case "uid":
			r.uid, err = dec.str()
		case "requestId":
			r.id, err = dec.str()
		case "type":
			var t int
			t, err = dec.DecodeInt()
			r.typ = requestType(t)
		case "packet":
			_, err = decodePacket(dec, &r.frame, true)
		case "opts":
			r.frame.sel, err = decodeSelector(dec)
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return r, malformed("request %q: %v", key, err)
		}
	}
	if r.typ == typeGap {
		return r, malformed("a gap notice in msgpack") // sent in JSON only, its span read there
	}
	r.frame.uid = r.uid
	return r, nil
}

// decodeClassicAnswer decodes an answer: JSON when it starts with '{',
// else msgpack (Node sends the acknowledgements of a broadcast, type 9,
// that way), whose packet becomes the ack, as JSON.
func decodeClassicAnswer(msg string) (answer, error) {
	if strings.HasPrefix(msg, "{") {
		return decodeClassicJSONAnswer(msg)
	}
	var a answer
	dec := newDecoder(msg)
	defer dec.release()
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return a, malformed("answer is neither JSON nor a msgpack map")
	}
	for range n {
		key, err := dec.str()
		if err != nil {
			return a, malformed("answer key: %v", err)
		}
		switch key {
		case "requestId":
			a.id, err = dec.str()
		case "type":
			var t int
			t, err = dec.DecodeInt()
			a.typ = requestType(t)
		case "clientCount":
			a.clientCount, err = dec.DecodeInt()
		case "packet":
			var v any
			if v, err = dec.value(0); err == nil {
				a.ack, err = json.Marshal(v)
			}
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return a, malformed("answer %q: %v", key, err)
		}
	}
	if a.ack == nil {
		a.ack = json.RawMessage("null")
	}
	return a, nil
}

func decodeClassicJSONAnswer(msg string) (answer, error) {
	var w classicAnswer
	if err := json.Unmarshal([]byte(msg), &w); err != nil {
		return answer{}, malformed("answer: %v", err)
	}
	a := answer{id: w.RequestID, uid: w.UID, typ: w.Type, rooms: w.Rooms, clientCount: w.ClientCount, ack: w.Data}
	if a.ack == nil {
		a.ack = json.RawMessage("null") // Node leaves out an undefined ack
	}
	// An answer to sockets (ids) and one to fetchSockets (objects) have
	// the same field; the elements tell which.
	for _, e := range w.Sockets {
		var err error
		if len(e) > 0 && e[0] == '"' {
			var id string
			err = json.Unmarshal(e, &id)
			a.ids = append(a.ids, id)
		} else {
			var s RemoteSocket
			err = json.Unmarshal(e, &s)
			a.sockets = append(a.sockets, s)
		}
		if err != nil {
			return a, malformed("answer sockets: %v", err)
		}
	}
	return a, nil
}

// classicRequest is a JSON request on the wire. Zero fields are left out,
// as Node leaves them out; each type sets the fields Node sets for it.
type classicRequest struct {
	UID       string          `json:"uid"`
	RequestID string          `json:"requestId,omitempty"`
	Type      requestType     `json:"type"`
	Opts      *classicOpts    `json:"opts,omitempty"`
	Rooms     []string        `json:"rooms,omitempty"`
	Close     *bool           `json:"close,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	// The legacy per-socket form of join, leave and disconnect.
	SID  string `json:"sid,omitempty"`
	Room string `json:"room,omitempty"`
}

type classicOpts struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
}

func classicOptsOf(s selector) *classicOpts {
	s = s.wire()
	return &classicOpts{Rooms: s.Rooms, Except: s.Except}
}

// classicAnswer is a JSON answer on the wire. UID is ours: Go nodes add it
// so a requester knows which node holds a fetched socket; Node.js nodes
// leave it out.
type classicAnswer struct {
	Type        requestType       `json:"type,omitempty"`
	RequestID   string            `json:"requestId"`
	UID         string            `json:"uid,omitempty"`
	Rooms       []string          `json:"rooms,omitempty"`
	Sockets     []json.RawMessage `json:"sockets,omitempty"`
	Data        json.RawMessage   `json:"data,omitempty"`
	ClientCount int               `json:"clientCount,omitempty"`
}

// classic is the protocol of Node's createAdapter: PUBLISH/PSUBSCRIBE for
// broadcasts, PUBLISH/SUBSCRIBE for requests and answers. With perRoom
// (the connectors' RoomSubscriptions), a node SUBSCRIBEs the namespace's
// channel and the channel of each room it holds local sockets in, socket-id
// rooms included, instead of PSUBSCRIBE: Node publishes a broadcast to
// exactly one room (a socket id too) on the room's channel and every other
// one on the namespace's, so the node reads all that concerns it and
// nothing else.
type classic struct {
	key, uid string
	perRoom  bool
	// counted: a PUBLISH's answer counts every subscriber of the fleet
	// (one server). A cluster's counts only the clients of the node that
	// ran it, and the nodes' patterns sit on whichever node rueidis
	// picked: no audience there.
	counted bool
}

// classicNamespace is the classic protocol bound to one namespace.
type classicNamespace struct {
	ch       channels
	uid, nsp string
	own      string // this node's response channel
	perRoom  bool
	// everyone and rooms are the audiences of the broadcasts on the
	// namespace's channel and, without perRoom, on a room's, which every
	// node's pattern reads (nil: not counted). With perRoom, a room's are
	// read by the nodes holding it: no audience. In a fleet that mixes
	// the two, a room's count is the pattern nodes' and the holders': the
	// rooms compared after an outage may count failures they did not
	// have, until the window ends (docs/delivery.md).
	everyone, rooms *audience
}

func (p classic) namespace(nsp string) nsProtocol {
	ch := newChannels(p.key, nsp)
	n := &classicNamespace{ch: ch, uid: p.uid, nsp: nsp, own: ch.responseTo(p.uid), perRoom: p.perRoom}
	if p.counted {
		n.everyone = &audience{}
		if !p.perRoom {
			n.rooms = &audience{}
		}
	}
	return n
}

func (classic) asksFor(requestType) bool { return true }

func (p classic) roomChannels() roomChannels {
	if !p.perRoom {
		return nil
	}
	return p
}

var _ roomChannels = classic{}

// roomChannel: every room has one, a socket's own id room too (Node
// publishes a broadcast to one socket id on it).
func (p classic) roomChannel(nsp, room string, _ bool) (string, bool) {
	return newChannels(p.key, nsp).room(room), true
}

// subscribeRoom is keyed by the channel's slot, which in a cluster spreads
// the rooms over the masters (a PUBLISH reaches every node).
func (classic) subscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Subscribe().Channel(channel).Build().SetSlot(channel)
}

func (classic) unsubscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Unsubscribe().Channel(channel).Build().SetSlot(channel)
}

// publishRoom is keyed by the channel's slot: in a cluster it goes to the
// master whose connection subscribes to it.
func (classic) publishRoom(b rueidis.Builder, channel, payload string) rueidis.Completed {
	return b.Publish().Channel(channel).Message(payload).Build().SetSlot(channel)
}

func (classic) start(context.Context, *node) error { return nil }

// command sends every PUBLISH of a namespace through the node owning the
// slot of the namespace's name: a cluster client otherwise sends each
// PUBLISH to a random node, and the cluster bus would deliver two messages
// of one sender out of order. Outside a cluster the slot is ignored.
func (p *classicNamespace) command(b rueidis.Builder, m message, _ seqNo) rueidis.Completed {
	return b.Publish().Channel(m.channel).Message(rueidis.BinaryString(m.payload)).Build().SetSlot(p.nsp)
}

func (p *classicNamespace) subscriptions(c rueidis.Client) []subscription {
	pattern, request := p.ch.pattern(), p.ch.request
	broadcasts := subscription{
		build:  func() rueidis.Completed { return c.B().Psubscribe().Pattern(pattern).Build() },
		routes: map[string]queueKind{pattern: toBroadcasts},
	}
	if p.perRoom { // the rooms' channels come and go (rooms.go)
		base := p.ch.broadcast
		broadcasts = subscription{
			build:  func() rueidis.Completed { return c.B().Subscribe().Channel(base).Build().SetSlot(base) },
			routes: map[string]queueKind{base: toBroadcasts},
		}
	}
	return []subscription{
		broadcasts,
		{
			// Servers are counted with PUBSUB NUMSUB of this channel, which
			// node-redis sums over the masters only: keying the SUBSCRIBE
			// by its slot keeps it on a master in a cluster.
			build:  func() rueidis.Completed { return c.B().Subscribe().Channel(request).Build().SetSlot(request) },
			routes: map[string]queueKind{request: toRequests},
		},
		p.answers(c),
	}
}

// answers: Node answers on the shared response channel (unless
// publishOnSpecificResponseChannel is set), Go nodes on the requester's
// own; a requester reads both.
func (p *classicNamespace) answers(c rueidis.Client) subscription {
	return subscription{
		build:  func() rueidis.Completed { return c.B().Subscribe().Channel(p.ch.response, p.own).Build() },
		routes: map[string]queueKind{p.ch.response: toResponses, p.own: toResponses},
	}
}

func (p *classicNamespace) roomOf(channel string) string {
	room, _ := p.ch.roomOf(channel)
	return room
}

// fromNode looks at the frame's head, [uid, ...]: a fixarray of 3, then
// the uid as a fixstr (a node uid is 6 characters, in Node too). Any other
// head answers false, and the frame is decoded.
func (p *classicNamespace) fromNode(msg string) bool {
	n := len(p.uid)
	return n < 32 && len(msg) > 2+n && msg[0] == 0x93 && msg[1] == 0xa0|byte(n) && msg[2:2+n] == p.uid
}

// encodeBroadcast publishes a broadcast to exactly one room on the room's
// own channel: receivers without that room skip decoding it.
func (p *classicNamespace) encodeBroadcast(sel selector, event string, args []any) (message, error) {
	payload, err := encodeClassicBroadcast(p.uid, p.nsp, sel, event, args)
	if len(sel.Rooms) != 1 {
		return message{channel: p.ch.broadcast, payload: payload, audience: p.everyone, readers: readersAll}, err
	}
	readers := readersAll // the pattern reads a room's channel
	if p.perRoom {
		readers = readersRoom
	}
	return message{channel: p.ch.room(sel.Rooms[0]), payload: payload, audience: p.rooms, readers: readers}, err
}

func (p *classicNamespace) encodeRequest(r request) (message, error) {
	if r.typ == typeBroadcast {
		payload, err := encodeBroadcastRequest(r)
		return message{channel: p.ch.request, payload: payload}, err
	}
	w := classicRequest{UID: r.uid, RequestID: r.id, Type: r.typ}
	switch r.typ {
	case typeSockets:
		w.Rooms = r.rooms
	case typeRemoteJoin, typeRemoteLeave:
		w.Opts, w.Rooms = classicOptsOf(r.sel), r.rooms
	case typeRemoteDisconnect:
		w.Opts, w.Close = classicOptsOf(r.sel), &r.close
	case typeRemoteFetch:
		w.Opts = classicOptsOf(r.sel)
	case typeServerSideEmit:
		var err error
		if w.Data, err = encodeEventArgs(r.event, r.args); err != nil {
			return message{}, err
		}
	case typeGap:
		var err error
		if w.Data, err = json.Marshal(gapDataOf(r)); err != nil {
			return message{}, err
		}
	}
	payload, err := json.Marshal(w)
	return message{channel: p.ch.request, payload: payload, readers: readersAll}, err
}

// encodeAnswer answers on the requester's own response channel, which
// every node (Go or Node.js) subscribes to: unlike the shared one, it
// spares the other nodes from reading the answer.
func (p *classicNamespace) encodeAnswer(to request, a answer) (message, error) {
	channel := p.ch.response
	if to.uid != "" {
		channel = p.ch.responseTo(to.uid)
	}
	var body map[string]any
	switch to.typ {
	case typeSockets:
		body = map[string]any{"requestId": to.id, "uid": p.uid, "sockets": nonNil(a.ids)}
	case typeAllRooms:
		body = map[string]any{"requestId": to.id, "uid": p.uid, "rooms": nonNil(a.rooms)}
	case typeRemoteFetch:
		body = map[string]any{"requestId": to.id, "uid": p.uid, "sockets": nonNil(a.sockets)}
	case typeServerSideEmit:
		body = map[string]any{"type": typeServerSideEmit, "requestId": to.id, "data": a.ack}
	case typeBroadcast:
		if a.typ == typeBroadcastClientCount {
			body = map[string]any{"type": typeBroadcastClientCount, "requestId": to.id, "clientCount": a.clientCount}
			break
		}
		// Node sends acknowledgements as msgpack.
		var ack any
		_ = json.Unmarshal(a.ack, &ack)
		payload, err := msgpack.Marshal(map[string]any{"type": typeBroadcastAck, "requestId": to.id, "packet": ack})
		return message{channel: channel, payload: payload}, err
	default: // the legacy per-socket join, leave and disconnect
		body = map[string]any{"requestId": to.id}
	}
	payload, err := json.Marshal(body)
	return message{channel: channel, payload: payload}, err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeBroadcast: classic requests have their own channel, so a message
// of the broadcast queue is always a broadcast.
func (p *classicNamespace) decodeBroadcast(msg string) (broadcastFrame, *request, error) {
	f, err := decodeClassicBroadcast(msg)
	return f, nil, err
}

func (p *classicNamespace) decodeRequest(msg string) (request, error) {
	return decodeClassicRequest(msg)
}
func (p *classicNamespace) decodeAnswer(msg string) (answer, error) { return decodeClassicAnswer(msg) }

func (p *classicNamespace) ping(c rueidis.Client) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(p.nsp)
}

func (p *classicNamespace) probeChannel() string { return p.own }

// countCommand is Node's serverCount: PUBSUB NUMSUB of the request
// channel, which every node SUBSCRIBEs.
func (p *classicNamespace) countCommand(c rueidis.Client) (rueidis.Completed, string) {
	return c.B().PubsubNumsub().Channel(p.ch.request).Build(), p.ch.request
}

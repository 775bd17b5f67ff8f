package redisadapter

// The sharded protocol: Node's createShardedAdapter (@socket.io/redis-adapter
// 8, socket.io-adapter's ClusterAdapter messages) over SPUBLISH/SSUBSCRIBE,
// which Redis 7 routes by slot, so fan-out stays inside one shard instead of
// crossing the whole cluster bus.
//
//   - every node SSUBSCRIBEs "<key>#<nsp>#" and its own "<key>#<nsp>#<uid>#",
//     plus "<key>#<nsp>#<room>#" for each public room with local sockets;
//   - a broadcast to exactly one public room (one that does not look like a
//     20-character socket id) goes to the room's channel, every other
//     message to "<key>#<nsp>#", answers to the requester's own channel;
//   - messages are JSON {type, data, uid, nsp} (msgpack when Node's payload
//     holds binary); the server count is PUBSUB SHARDNUMSUB "<key>#<nsp>#".

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// The ClusterAdapter message types.
const (
	shardedInitialHeartbeat     = 1
	shardedHeartbeat            = 2
	shardedBroadcast            = 3
	shardedSocketsJoin          = 4
	shardedSocketsLeave         = 5
	shardedDisconnectSockets    = 6
	shardedFetchSockets         = 7
	shardedFetchSocketsResponse = 8
	shardedServerSideEmit       = 9
	shardedServerSideEmitResp   = 10
	shardedBroadcastClientCount = 11
	shardedBroadcastAck         = 12
	shardedAdapterClose         = 13
	shardedGap                  = int(typeGap) // ours (see typeGap)
)

type shardedData struct {
	Packet      json.RawMessage `json:"packet,omitempty"`
	Opts        *shardedOpts    `json:"opts,omitempty"`
	RequestID   string          `json:"requestId,omitempty"`
	Rooms       []string        `json:"rooms,omitempty"`
	Close       *bool           `json:"close,omitempty"`
	Sockets     json.RawMessage `json:"sockets,omitempty"`
	ClientCount *int            `json:"clientCount,omitempty"`
	gapData
}

type shardedOpts struct {
	Rooms  []string       `json:"rooms"`
	Except []string       `json:"except"`
	Flags  map[string]any `json:"flags"`
}

func toShardedOpts(s selector) *shardedOpts {
	s = s.wire()
	return &shardedOpts{Rooms: s.Rooms, Except: s.Except, Flags: map[string]any{}}
}

func (o *shardedOpts) selector() selector {
	if o == nil {
		return selector{}
	}
	return selector{Rooms: o.Rooms, Except: o.Except}
}

// shardedMessage is the envelope of every message.
type shardedMessage struct {
	Type int             `json:"type"`
	Data json.RawMessage `json:"data"`
	UID  string          `json:"uid"`
	Nsp  string          `json:"nsp"`
}

// sharded is the protocol of Node's createShardedAdapter.
type sharded struct{ key, uid string }

// shardedNamespace is the sharded protocol bound to one namespace.
type shardedNamespace struct {
	ch       channels
	uid, nsp string
	own      string // this node's channel
	// everyone is the audience of the broadcasts on the namespace's
	// channel, which every node reads (a room's is read by the nodes
	// holding it: no audience).
	everyone *audience
}

func (p sharded) namespace(nsp string) nsProtocol { return newShardedNamespace(p.key, p.uid, nsp) }

func newShardedNamespace(key, uid, nsp string) *shardedNamespace {
	ch := newChannels(key, nsp)
	return &shardedNamespace{ch: ch, uid: uid, nsp: nsp, own: ch.node(uid), everyone: &audience{}}
}

func (p sharded) roomChannels() roomChannels { return p }

func (sharded) start(context.Context, *node) error { return nil }

func (p *shardedNamespace) command(b rueidis.Builder, m message, _ seqNo) rueidis.Completed {
	return b.Spublish().Channel(m.channel).Message(rueidis.BinaryString(m.payload)).Build()
}

// asksFor: the ClusterAdapter protocol has no allRooms and no socket-id
// listing; the core answers those with a fetch.
func (sharded) asksFor(t requestType) bool { return t != typeAllRooms && t != typeSockets }

var _ roomChannels = sharded{}

// roomChannel: a socket's own id room has none (private). hasRoomChannel:
// as in Node's "dynamic" mode, a room that looks like a
// socket id (20 characters) has no channel; its broadcasts go to the
// namespace's.
func hasRoomChannel(room string) bool { return len(room) != 20 }

func (p sharded) roomChannel(nsp, room string, private bool) (string, bool) {
	return newChannels(p.key, nsp).room(room), !private && hasRoomChannel(room)
}

func (sharded) subscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Ssubscribe().Channel(channel).Build()
}

func (sharded) unsubscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Sunsubscribe().Channel(channel).Build()
}

func (sharded) publishRoom(b rueidis.Builder, channel, payload string) rueidis.Completed {
	return b.Spublish().Channel(channel).Message(payload).Build()
}

func (p *shardedNamespace) subscriptions(c rueidis.Client) []subscription {
	base := p.ch.broadcast
	// One SSUBSCRIBE may not mix slots: one subscription per channel.
	return []subscription{
		{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(base).Build() }, routes: map[string]queueKind{base: toBroadcasts}},
		p.answers(c),
	}
}

// answers: every answer comes on the requester's own channel.
func (p *shardedNamespace) answers(c rueidis.Client) subscription {
	own := p.own
	return subscription{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(own).Build() }, routes: map[string]queueKind{own: toResponses}}
}

// roomOf is "" for every channel: a node subscribes to a room's channel only
// while it has local sockets in the room.
func (p *shardedNamespace) roomOf(channel string) string { return "" }

// fromNode: the uid sits after the data in the JSON envelope, so only
// decoding tells.
func (p *shardedNamespace) fromNode(msg string) bool { return false }

// message is the envelope of a message of type typ with data d.
func (p *shardedNamespace) message(typ int, d shardedData) ([]byte, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return p.envelope(typ, data)
}

// envelope is the envelope of a message of type typ with data, JSON.
func (p *shardedNamespace) envelope(typ int, data []byte) ([]byte, error) {
	return json.Marshal(shardedMessage{Type: typ, Data: data, UID: p.uid, Nsp: p.nsp})
}

func (p *shardedNamespace) encodeBroadcast(sel selector, event string, args []any) (message, error) {
	data, err := broadcastDataJSON(sel, event, args)
	if err != nil {
		return message{}, err
	}
	payload, err := p.envelope(shardedBroadcast, data)
	// As Node's "dynamic" mode: a one-room broadcast goes to the room's
	// channel, unless the room looks like a socket id (those have none).
	if len(sel.Rooms) == 1 && hasRoomChannel(sel.Rooms[0]) {
		return message{channel: p.ch.room(sel.Rooms[0]), payload: payload, readers: readersRoom}, err
	}
	return message{channel: p.ch.broadcast, payload: payload, audience: p.everyone, readers: readersAll}, err
}

// shardedBroadcastData is the data of a BROADCAST message:
// {packet: {type: 2, data: [event, ...args]}, opts}, with the packet as JSON.
func shardedBroadcastData(sel selector, event string, args []any) (shardedData, error) {
	packet, err := packetJSON(event, args)
	return shardedData{Packet: packet, Opts: toShardedOpts(sel)}, err
}

// packetJSON is a broadcast's packet {"type":2,"data":[event,...args]},
// as json.Marshal writes it.
func packetJSON(event string, args []any) (json.RawMessage, error) {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return nil, errorf("encode %q: %w", event, err)
	}
	b := make([]byte, 0, len(data)+20)
	b = strconv.AppendInt(append(b, `{"type":`...), packetEvent, 10)
	return append(append(append(b, `,"data":`...), data...), '}'), nil
}

// broadcastDataJSON is the data of a BROADCAST message without a
// requestId, byte for byte what json.Marshal writes for
// shardedBroadcastData's, without its reflection and its copies:
// {"packet":{...},"opts":{"rooms":[...],"except":[...],"flags":{}}}.
func broadcastDataJSON(sel selector, event string, args []any) ([]byte, error) {
	packet, err := packetJSON(event, args)
	if err != nil {
		return nil, err
	}
	sel = sel.wire()
	rooms, _ := json.Marshal(sel.Rooms) // strings always encode
	except, _ := json.Marshal(sel.Except)
	b := make([]byte, 0, len(packet)+len(rooms)+len(except)+48)
	b = append(append(b, `{"packet":`...), packet...)
	b = append(append(b, `,"opts":{"rooms":`...), rooms...)
	b = append(append(b, `,"except":`...), except...)
	return append(b, `,"flags":{}}}`...), nil
}

func (p *shardedNamespace) encodeRequest(r request) (message, error) {
	typ, d, err := shardedRequest(r)
	if err != nil {
		return message{}, err
	}
	payload, err := p.message(typ, d)
	return message{channel: p.ch.broadcast, payload: payload, readers: readersAll}, err
}

// shardedRequest is the ClusterAdapter message type and data of a request.
func shardedRequest(r request) (int, shardedData, error) {
	d := shardedData{RequestID: r.id}
	var typ int
	switch r.typ {
	case typeRemoteJoin, typeRemoteLeave:
		typ = shardedSocketsJoin
		if r.typ == typeRemoteLeave {
			typ = shardedSocketsLeave
		}
		d.Opts, d.Rooms = toShardedOpts(r.sel), r.rooms
	case typeRemoteDisconnect:
		typ, d.Opts, d.Close = shardedDisconnectSockets, toShardedOpts(r.sel), &r.close
	case typeRemoteFetch:
		typ, d.Opts = shardedFetchSockets, toShardedOpts(r.sel)
	case typeServerSideEmit:
		var err error
		if d.Packet, err = encodeEventArgs(r.event, r.args); err != nil {
			return 0, d, err
		}
		typ = shardedServerSideEmit
	case typeBroadcast:
		// A broadcast with a requestId wants acknowledgements. It goes to
		// the namespace's channel even for one room, as in Node: every
		// node counted by SHARDNUMSUB must answer with its client count.
		b, err := shardedBroadcastData(r.frame.sel, r.frame.event, r.frame.args)
		if err != nil {
			return 0, d, err
		}
		typ, d.Packet, d.Opts = shardedBroadcast, b.Packet, b.Opts
		d.Opts.Flags["timeout"] = r.ackTimeout.Milliseconds()
	case typeGap:
		typ, d.gapData = shardedGap, gapDataOf(r)
	default:
		return 0, d, errorf("%s has no ClusterAdapter form", r.typ)
	}
	return typ, d, nil
}

// encodeAnswer answers on the requester's own channel.
func (p *shardedNamespace) encodeAnswer(to request, a answer) (message, error) {
	d := shardedData{RequestID: to.id}
	var typ int
	switch {
	case to.typ == typeRemoteFetch:
		sockets, err := json.Marshal(nonNil(a.sockets))
		if err != nil {
			return message{}, err
		}
		typ, d.Sockets = shardedFetchSocketsResponse, sockets
	case to.typ == typeServerSideEmit:
		typ, d.Packet = shardedServerSideEmitResp, a.ack
	case to.typ == typeBroadcast && a.typ == typeBroadcastClientCount:
		typ, d.ClientCount = shardedBroadcastClientCount, &a.clientCount
	case to.typ == typeBroadcast:
		typ, d.Packet = shardedBroadcastAck, a.ack
	default:
		return message{}, errorf("%s has no sharded answer", to.typ)
	}
	if d.Packet == nil && (typ == shardedServerSideEmitResp || typ == shardedBroadcastAck) {
		d.Packet = json.RawMessage("null")
	}
	payload, err := p.message(typ, d)
	return message{channel: p.ch.node(to.uid), payload: payload}, err
}

// decodeShardedMessage reads the envelope: JSON, or msgpack (Node's choice when the
// payload holds binary), read with the bounded decoder and re-read as JSON.
func decodeShardedMessage(msg string) (shardedMessage, shardedData, error) {
	var m shardedMessage
	var d shardedData
	raw := []byte(msg)
	if !strings.HasPrefix(msg, "{") {
		dec := newDecoder(msg)
		v, err := dec.value(0)
		dec.release()
		if err != nil {
			return m, d, malformed("sharded message: %v", err)
		}
		if raw, err = json.Marshal(v); err != nil {
			return m, d, malformed("sharded message: %v", err)
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, d, malformed("sharded message: %v", err)
	}
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return m, d, malformed("sharded message data: %v", err)
		}
	}
	if m.Nsp == "" {
		m.Nsp = "/"
	}
	return m, d, nil
}

// decodeBroadcast decodes a message of the namespace's channel: a
// broadcast, or any request (a broadcast with a requestId wants
// acknowledgements, and is one).
func (p *shardedNamespace) decodeBroadcast(msg string) (broadcastFrame, *request, error) {
	var f broadcastFrame
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return f, nil, err
	}
	if m.Type != shardedBroadcast || d.RequestID != "" {
		r, err := shardedRequestOf(m, d)
		return f, &r, err
	}
	f.uid, f.nsp, f.sel = m.UID, m.Nsp, d.Opts.selector()
	f.event, f.args, err = decodeJSONPacket(d.Packet)
	return f, nil, err
}

// jsonPacket is a broadcast's packet as JSON: {type: 2, data: [event, ...args]}.
type jsonPacket struct {
	Type int   `json:"type"`
	Data []any `json:"data"`
}

// event checks a decoded packet (nil: none) and returns its event and
// arguments.
func (p *jsonPacket) event() (string, []any, error) {
	if p == nil {
		return "", nil, malformed("broadcast without packet")
	}
	if p.Type != packetEvent && p.Type != packetBinaryEvent {
		return "", nil, malformed("packet type %d", p.Type)
	}
	if len(p.Data) == 0 {
		return "", nil, malformed("packet data is not a non-empty array")
	}
	event, ok := p.Data[0].(string)
	if !ok {
		return "", nil, malformed("event name is not a string")
	}
	return event, p.Data[1:], nil
}

// decodeJSONPacket reads {type: 2, data: [event, ...args]}; numbers keep
// their JSON text (json.Number) so large integers survive.
func decodeJSONPacket(raw json.RawMessage) (string, []any, error) {
	var p *jsonPacket
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return "", nil, malformed("packet: %v", err)
	}
	return p.event()
}

func (p *shardedNamespace) decodeRequest(msg string) (request, error) {
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return request{}, err
	}
	return shardedRequestOf(m, d)
}

// shardedRequestOf is the request a decoded message carries; an unknown
// type is -1, which the core drops and counts.
func shardedRequestOf(m shardedMessage, d shardedData) (request, error) {
	r := request{uid: m.UID, id: d.RequestID, nsp: m.Nsp}
	sel := d.Opts.selector()
	var err error
	switch m.Type {
	case shardedSocketsJoin, shardedSocketsLeave:
		r.typ, r.sel, r.rooms = typeRemoteJoin, sel, d.Rooms
		if m.Type == shardedSocketsLeave {
			r.typ = typeRemoteLeave
		}
	case shardedDisconnectSockets:
		r.typ, r.sel, r.close = typeRemoteDisconnect, sel, d.Close != nil && *d.Close
	case shardedFetchSockets:
		r.typ, r.sel = typeRemoteFetch, sel
	case shardedServerSideEmit:
		r.typ = typeServerSideEmit
		r.event, r.args, err = decodeEventArgs(d.Packet)
	case shardedBroadcast: // with a requestId: acknowledgements wanted
		r.typ = typeBroadcast
		r.frame = broadcastFrame{uid: m.UID, nsp: m.Nsp, sel: sel}
		r.frame.event, r.frame.args, err = decodeJSONPacket(d.Packet)
	case shardedGap:
		r.typ = typeGap
		r.gapSince, r.gapUntil, err = d.span()
		r.gapRooms = d.RoomChannels
	default:
		r.typ = -1
	}
	return r, err
}

func (p *shardedNamespace) decodeAnswer(msg string) (answer, error) {
	var a answer
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return a, err
	}
	a.id, a.uid = d.RequestID, m.UID
	switch m.Type {
	case shardedFetchSocketsResponse:
		if len(d.Sockets) > 0 {
			if err := json.Unmarshal(d.Sockets, &a.sockets); err != nil {
				return a, malformed("fetched sockets: %v", err)
			}
		}
	case shardedServerSideEmitResp:
		a.ack = d.Packet
	case shardedBroadcastClientCount:
		if d.ClientCount == nil {
			return a, malformed("client count without clientCount")
		}
		a.typ, a.clientCount = typeBroadcastClientCount, *d.ClientCount
	case shardedBroadcastAck:
		a.typ, a.ack = typeBroadcastAck, d.Packet
	default:
		return a, malformed("sharded answer type %d", m.Type)
	}
	if a.ack == nil {
		a.ack = json.RawMessage("null") // Node leaves out an undefined ack
	}
	return a, nil
}

func (p *shardedNamespace) ping(c rueidis.Client) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(p.ch.broadcast)
}

func (p *shardedNamespace) probeChannel() string { return p.own }

// countCommand is the sharded adapter's serverCount: PUBSUB SHARDNUMSUB of
// the namespace's channel.
func (p *shardedNamespace) countCommand(c rueidis.Client) (rueidis.Completed, string) {
	return c.B().PubsubShardnumsub().Channel(p.ch.broadcast).Build(), p.ch.broadcast
}

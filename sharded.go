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
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// The ClusterAdapter message types.
const (
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
)

// errIsRequest says a message of the broadcast queue is a request.
var errIsRequest = errors.New("request, not broadcast")

type sharded struct{}

func shardedChannel(key, nsp string) string { return key + "#" + nsp + "#" }

// shardedMessage is the envelope of every message.
type shardedMessage struct {
	Type int             `json:"type"`
	Data json.RawMessage `json:"data"`
	UID  string          `json:"uid"`
	Nsp  string          `json:"nsp"`
}

type shardedData struct {
	Packet      json.RawMessage `json:"packet,omitempty"`
	Opts        *shardedOpts    `json:"opts,omitempty"`
	RequestID   string          `json:"requestId,omitempty"`
	Rooms       []string        `json:"rooms,omitempty"`
	Close       *bool           `json:"close,omitempty"`
	Sockets     json.RawMessage `json:"sockets,omitempty"`
	ClientCount *int            `json:"clientCount,omitempty"`
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

func (sharded) subscriptions(c rueidis.Client, key, nsp, uid string) []subscription {
	base := shardedChannel(key, nsp)
	own := base + uid + "#"
	// One SSUBSCRIBE may not mix slots: one subscription per channel.
	return []subscription{
		{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(base).Build() }, routes: map[string]queueKind{base: toBroadcasts}},
		{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(own).Build() }, routes: map[string]queueKind{own: toResponses}},
	}
}

var _ roomChannels = sharded{}

// hasRoomChannel: as in Node's "dynamic" mode, a room that looks like a
// socket id (20 characters) has no channel; its broadcasts go to the
// namespace's.
func hasRoomChannel(room string) bool { return len(room) != 20 }

func (sharded) roomChannel(key, nsp, room string) (string, bool) {
	return shardedChannel(key, nsp) + room + "#", hasRoomChannel(room)
}

func (sharded) subscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Ssubscribe().Channel(channel).Build()
}

func (sharded) unsubscribeRoom(b rueidis.Builder, channel string) rueidis.Completed {
	return b.Sunsubscribe().Channel(channel).Build()
}

// roomOf is "" for every channel: a node subscribes to a room's channel only
// while it has local sockets in the room.
// fromNode: the uid sits after the data in the JSON envelope, so only
// decoding tells.
func (sharded) fromNode(msg, uid string) bool { return false }

func (sharded) roomOf(key, nsp, channel string) string { return "" }

func (sharded) encode(typ int, uid, nsp string, d shardedData) ([]byte, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(shardedMessage{Type: typ, Data: data, UID: uid, Nsp: nsp})
}

func (p sharded) encodeBroadcast(key, uid, nsp string, sel selector, event string, args []any) (string, []byte, error) {
	d, err := shardedBroadcastData(sel, event, args)
	if err != nil {
		return "", nil, err
	}
	payload, err := p.encode(shardedBroadcast, uid, nsp, d)
	channel := shardedChannel(key, nsp)
	// As Node's "dynamic" mode: a one-room broadcast goes to the room's
	// channel, unless the room looks like a socket id (those have none).
	if len(sel.Rooms) == 1 && hasRoomChannel(sel.Rooms[0]) {
		channel += sel.Rooms[0] + "#"
	}
	return channel, payload, err
}

// shardedBroadcastData is the data of a BROADCAST message:
// {packet: {type: 2, data: [event, ...args]}, opts}, with the packet as JSON.
func shardedBroadcastData(sel selector, event string, args []any) (shardedData, error) {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return shardedData{}, fmt.Errorf("redisadapter: encode %q: %w", event, err)
	}
	packet, _ := json.Marshal(struct {
		Type int             `json:"type"`
		Data json.RawMessage `json:"data"`
	}{packetEvent, data})
	return shardedData{Packet: packet, Opts: toShardedOpts(sel)}, nil
}

func (p sharded) encodeRequest(key, nsp string, r request) (string, []byte, error) {
	typ, d, err := shardedRequest(r)
	if err != nil {
		return "", nil, err
	}
	payload, err := p.encode(typ, r.UID, nsp, d)
	return shardedChannel(key, nsp), payload, err
}

// shardedRequest is the ClusterAdapter message type and data of a request.
func shardedRequest(r request) (int, shardedData, error) {
	d := shardedData{RequestID: r.RequestID}
	var typ int
	switch r.Type {
	case typeRemoteJoin, typeRemoteLeave:
		typ = shardedSocketsJoin
		if r.Type == typeRemoteLeave {
			typ = shardedSocketsLeave
		}
		d.Opts, d.Rooms = toShardedOpts(r.Opts.orEmpty()), r.Rooms
	case typeRemoteDisconnect:
		typ, d.Opts, d.Close = shardedDisconnectSockets, toShardedOpts(r.Opts.orEmpty()), r.Close
	case typeRemoteFetch:
		typ, d.Opts = shardedFetchSockets, toShardedOpts(r.Opts.orEmpty())
	case typeServerSideEmit:
		typ, d.Packet = shardedServerSideEmit, r.Data
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
	default:
		return 0, d, fmt.Errorf("redisadapter: %s has no ClusterAdapter form", r.Type)
	}
	return typ, d, nil
}

func (p sharded) encodeAnswer(key, nsp, uid string, to request, a answer) (string, []byte, error) {
	d := shardedData{RequestID: to.RequestID}
	var typ int
	switch {
	case to.Type == typeRemoteFetch:
		sockets, err := json.Marshal(nonNil(a.sockets))
		if err != nil {
			return "", nil, err
		}
		typ, d.Sockets = shardedFetchSocketsResponse, sockets
	case to.Type == typeServerSideEmit:
		ack, err := json.Marshal(a.ack)
		if err != nil {
			return "", nil, err
		}
		typ, d.Packet = shardedServerSideEmitResp, ack
	case to.Type == typeBroadcast && a.clientCount != nil:
		typ, d.ClientCount = shardedBroadcastClientCount, a.clientCount
	case to.Type == typeBroadcast:
		ack, err := json.Marshal(a.ack)
		if err != nil {
			return "", nil, err
		}
		typ, d.Packet = shardedBroadcastAck, ack
	default:
		return "", nil, fmt.Errorf("redisadapter: %s has no sharded answer", to.Type)
	}
	payload, err := p.encode(typ, uid, nsp, d)
	return shardedChannel(key, nsp) + to.UID + "#", payload, err
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

func (sharded) decodeBroadcast(msg string) (broadcastFrame, error) {
	var f broadcastFrame
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return f, err
	}
	if m.Type != shardedBroadcast || d.RequestID != "" {
		return f, errIsRequest
	}
	f.uid, f.nsp, f.sel = m.UID, m.Nsp, d.Opts.selector()
	f.event, f.args, err = decodeJSONPacket(d.Packet)
	return f, err
}

// decodeJSONPacket reads {type: 2, data: [event, ...args]}; numbers keep
// their JSON text (json.Number) so large integers survive.
func decodeJSONPacket(raw json.RawMessage) (string, []any, error) {
	var p struct {
		Type int             `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", nil, malformed("packet: %v", err)
	}
	if p.Type != packetEvent && p.Type != packetBinaryEvent {
		return "", nil, malformed("packet type %d", p.Type)
	}
	dec := json.NewDecoder(bytes.NewReader(p.Data))
	dec.UseNumber()
	var data []any
	if err := dec.Decode(&data); err != nil || len(data) == 0 {
		return "", nil, malformed("packet data is not a non-empty array")
	}
	event, ok := data[0].(string)
	if !ok {
		return "", nil, malformed("event name is not a string")
	}
	return event, data[1:], nil
}

func (sharded) decodeRequest(msg string) (request, error) {
	var r request
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return r, err
	}
	r.UID, r.RequestID, r.nsp = m.UID, d.RequestID, m.Nsp
	sel := d.Opts.selector()
	switch m.Type {
	case shardedSocketsJoin, shardedSocketsLeave:
		r.Type, r.Opts, r.Rooms = typeRemoteJoin, &sel, d.Rooms
		if m.Type == shardedSocketsLeave {
			r.Type = typeRemoteLeave
		}
	case shardedDisconnectSockets:
		r.Type, r.Opts, r.Close = typeRemoteDisconnect, &sel, d.Close
	case shardedFetchSockets:
		r.Type, r.Opts = typeRemoteFetch, &sel
	case shardedServerSideEmit:
		r.Type, r.Data = typeServerSideEmit, d.Packet
	case shardedBroadcast: // with a requestId: acknowledgements wanted
		r.Type = typeBroadcast
		r.frame = broadcastFrame{uid: m.UID, nsp: m.Nsp, sel: sel}
		if r.frame.event, r.frame.args, err = decodeJSONPacket(d.Packet); err != nil {
			return r, err
		}
	default:
		r.Type = -1 // unknown: the core drops and counts it
	}
	return r, nil
}

func (sharded) decodeResponse(msg string) (response, error) {
	var r response
	m, d, err := decodeShardedMessage(msg)
	if err != nil {
		return r, err
	}
	r.RequestID, r.UID = d.RequestID, m.UID
	switch m.Type {
	case shardedFetchSocketsResponse:
		r.Type, r.Sockets = typeRemoteFetch, d.Sockets
	case shardedServerSideEmitResp:
		r.Type, r.Data = typeServerSideEmit, d.Packet
	case shardedBroadcastClientCount:
		if d.ClientCount == nil {
			return r, malformed("client count without clientCount")
		}
		r.Type, r.ClientCount = typeBroadcastClientCount, *d.ClientCount
	case shardedBroadcastAck:
		r.Type, r.Ack = typeBroadcastAck, d.Packet
		if r.Ack == nil {
			r.Ack = json.RawMessage("null") // Node leaves out an undefined ack
		}
	default:
		return r, malformed("sharded answer type %d", m.Type)
	}
	return r, nil
}

func (sharded) publish(c rueidis.Client, channel string, payload []byte, _ string, _ uint64) rueidis.Completed {
	return c.B().Spublish().Channel(channel).Message(rueidis.BinaryString(payload)).Build()
}

func (sharded) ping(c rueidis.Client, key, nsp string) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(shardedChannel(key, nsp))
}

// countCommand is the sharded adapter's serverCount: PUBSUB SHARDNUMSUB of
// the namespace's channel.
func (sharded) countCommand(c rueidis.Client, key, nsp string) (rueidis.Completed, string) {
	ch := shardedChannel(key, nsp)
	return c.B().PubsubShardnumsub().Channel(ch).Build(), ch
}

// asksFor: the ClusterAdapter protocol has no allRooms and no socket-id
// listing; the core answers those with a fetch.
func (sharded) asksFor(t requestType) bool { return t != typeAllRooms && t != typeSockets }

package redisadapter

// The streams protocol: Node's @socket.io/redis-streams-adapter 0.3.x
// (socket.io-adapter's ClusterAdapter messages, as in sharded.go), in which
// what must not be lost goes through a Redis stream and the rest through
// pub/sub:
//
//   - durable messages (broadcasts without acknowledgement, sockets join,
//     leave and disconnect) are stream entries,
//     XADD <stream> MAXLEN ~ <maxLen> * uid <uid> nsp <nsp> type <n> data <d>
//     seq <producer>:<n>, d being the message's data as JSON, or base64 of
//     its msgpack when it holds binary; each node reads the stream with
//     XREAD BLOCK from the last entry it read, so after a reconnect it
//     resumes where it stopped;
//   - seq is ours (Node reads the fields it knows and ignores it): a
//     publisher (random producer name) numbers its entries in the order it
//     sends them, and sends again an entry whose XADD failed in a way that
//     may have left it out (a dropped connection); a reader drops an entry
//     whose number it has read from that producer already (within the last
//     seqWindow numbers), the second copy a resend leaves when the first did
//     reach Redis. Node's readers do not know seq: in a mixed fleet they
//     deliver that second copy;
//   - ephemeral messages (fetch sockets, server-side emits, broadcasts with
//     acknowledgements) are msgpack of the whole message, PUBLISHed (or
//     SPUBLISHed) on "<key>#<nsp>#", and answers on the requester's
//     "<key>#<nsp>#<uid>#";
//   - the server count is PUBSUB NUMSUB (SHARDNUMSUB) of "<key>#<nsp>#".
//
// A namespace's stream is Streams.Name, or with Streams.Count N > 1
// "<Name>-<hashCode(nsp) % N>" (Java's String.hashCode, as Node computes it).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

var _ Connector = Streams{}

// Streams runs the adapter (or an Emitter) in streams mode over any of the
// other connectors, wire-compatible with Node's
// @socket.io/redis-streams-adapter 0.3.x with the same settings: a
// broadcast published while a node is away from Redis reaches it when it
// is back, in order, once. Failed writes are sent again (Stats.Resent) and
// Go readers drop the second copy (Stats.StreamDuplicates). Requests and
// answers go through pub/sub, as in Node. What can still be lost, and how
// you learn of it, is in docs/modes.md ("Pub/sub or streams?") and the
// package doc (Delivery). Each stream lives on one Redis node; Count
// spreads namespaces over several.
type Streams struct {
	// Connector is the deployment: Standalone, Sentinel or Cluster (its Sharded field selects sharded pub/sub for requests and answers). required
	Connector Connector
	// Name is the stream's key, Node's streamName. default: "socket.io"
	Name string
	// Count is how many streams the namespaces are spread over, Node's streamCount. default: 1
	Count int
	// MaxLen is the approximate length the stream is trimmed to on each XADD (MAXLEN ~), Node's maxLen. default: 10000
	MaxLen int
	// ReadCount is how many entries one XREAD returns at most, Node's readCount. default: 100
	ReadCount int
	// ShardedPubSub sends requests and answers with SPUBLISH/SSUBSCRIBE (Redis 7), Node's useShardedPubSub. default: false, or true for a Cluster with Sharded
	ShardedPubSub bool
}

func (s *Streams) setDefaults() {
	if s.Name == "" {
		s.Name = "socket.io"
	}
	if s.Count == 0 {
		s.Count = 1
	}
	if s.MaxLen == 0 {
		s.MaxLen = 10000
	}
	if s.ReadCount == 0 {
		s.ReadCount = 100
	}
	if c, ok := s.Connector.(Cluster); ok && c.Sharded {
		s.ShardedPubSub = true
	}
}

func (s *Streams) validate() error {
	if s.Connector == nil {
		return errorf("%w: Streams.Connector is nil", ErrConfig)
	}
	if _, nested := s.Connector.(Streams); nested {
		return errorf("%w: Streams.Connector is a Streams", ErrConfig)
	}
	if roomSubscriptions(s.Connector) {
		return fmt.Errorf("%w: Streams.Connector has RoomSubscriptions: streams mode has no room channels", ErrConfig)
	}
	if strings.ContainsRune(s.Name, 0) {
		return errorf("%w: Streams.Name %q contains a NUL byte", ErrConfig, s.Name)
	}
	return errors.Join(
		negative("Streams.Count", s.Count),
		negative("Streams.MaxLen", s.MaxLen),
		negative("Streams.ReadCount", s.ReadCount),
	)
}

// configured configures the deployment's connector too.
func (s Streams) configured() (Connector, error) {
	s.setDefaults()
	if err := s.validate(); err != nil {
		return s, err
	}
	var err error
	s.Connector, err = s.Connector.configured()
	return s, err
}

func (s Streams) clientOption() rueidis.ClientOption { return s.Connector.clientOption() }

func (s Streams) protocol(key, uid string) protocol {
	return streams{key: key, uid: uid, name: s.Name, count: s.Count, maxLen: s.MaxLen, readCount: s.ReadCount, shardedPubSub: s.ShardedPubSub}
}

// streams is the protocol; its settings have their defaults filled in.
type streams struct {
	key, uid      string
	name          string
	count         int
	maxLen        int
	readCount     int
	shardedPubSub bool
}

// streamsNamespace is the streams protocol bound to one namespace.
type streamsNamespace struct {
	sh            *shardedNamespace // the ClusterAdapter messages and the channels
	shardedPubSub bool
	stream        string
	uid, nsp      string
	maxLen        string // MAXLEN ~ of each XADD
}

func (p streams) namespace(nsp string) nsProtocol {
	return &streamsNamespace{
		sh: newShardedNamespace(p.key, p.uid, nsp), shardedPubSub: p.shardedPubSub,
		stream: streamName(p.name, p.count, nsp), uid: p.uid, nsp: nsp, maxLen: strconv.Itoa(p.maxLen),
	}
}

func (streams) roomChannels() roomChannels { return nil }

// start reads where each stream of the namespaces ends now, so that
// anything added after it returns reaches the node, and starts one reader
// per stream.
func (p streams) start(ctx context.Context, n *node) error {
	seen := make(map[string]bool)
	for name := range n.in.namespaces {
		stream := streamName(p.name, p.count, name)
		if seen[stream] {
			continue
		}
		seen[stream] = true
		info, err := streamInfo(ctx, n.client, stream)
		if err != nil {
			return errorf("reading stream %q: %w", stream, unreachable(err))
		}
		r := &streamReader{n: n, p: p, stream: stream, offset: info.last}
		n.spawn(r.run)
	}
	return nil
}

// command builds a durable message's XADD, numbered by seq, or the
// PUBLISH (SPUBLISH) of an ephemeral one.
func (p *streamsNamespace) command(b rueidis.Builder, m message, seq seqNo) rueidis.Completed {
	switch {
	case m.durable:
		return b.Xadd().Key(p.stream).Maxlen().Almost().Threshold(p.maxLen).Id("*").
			FieldValue().FieldValue("uid", p.uid).FieldValue("nsp", p.nsp).FieldValue("type", strconv.Itoa(m.kind)).
			FieldValue("data", rueidis.BinaryString(m.payload)).
			FieldValue("seq", seq.field()).Build()
	case p.shardedPubSub:
		return b.Spublish().Channel(m.channel).Message(rueidis.BinaryString(m.payload)).Build()
	default:
		return b.Publish().Channel(m.channel).Message(rueidis.BinaryString(m.payload)).Build().SetSlot(m.channel)
	}
}

// asksFor: the ClusterAdapter protocol has no allRooms and no socket-id
// listing; the core answers those with a fetch. No gap notices either: a
// stream keeps what a reader could not read.
func (streams) asksFor(t requestType) bool {
	return t != typeAllRooms && t != typeSockets && t != typeGap
}

func (p *streamsNamespace) subscriptions(c rueidis.Client) []subscription {
	public, own := p.sh.ch.broadcast, p.sh.own
	if p.shardedPubSub { // one SSUBSCRIBE may not mix slots
		return []subscription{
			{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(public).Build() }, routes: map[string]queueKind{public: toRequests}},
			p.answers(c),
		}
	}
	// Keyed by the public channel's slot, so that in a cluster the
	// subscription sits on a master, where the server count looks.
	return []subscription{{
		build:  func() rueidis.Completed { return c.B().Subscribe().Channel(public, own).Build().SetSlot(public) },
		routes: map[string]queueKind{public: toRequests, own: toResponses},
	}}
}

// answers: every answer comes on the requester's own channel, with
// sharded pub/sub or plain.
func (p *streamsNamespace) answers(c rueidis.Client) subscription {
	own := p.sh.own
	if p.shardedPubSub {
		return p.sh.answers(c)
	}
	return subscription{build: func() rueidis.Completed { return c.B().Subscribe().Channel(own).Build() }, routes: map[string]queueKind{own: toResponses}}
}

// roomOf: there are no room channels.
func (p *streamsNamespace) roomOf(channel string) string { return "" }

// fromNode: the stream reader skips this node's entries before decoding.
func (p *streamsNamespace) fromNode(msg string) bool { return false }

func (p *streamsNamespace) encodeBroadcast(sel selector, event string, args []any) (message, error) {
	var data []byte
	var err error
	if hasBinary(args, 0) {
		data, err = binaryBroadcastData(sel, event, args)
	} else {
		data, err = broadcastDataJSON(sel, event, args)
	}
	if err != nil {
		return message{}, err
	}
	return p.entry(shardedBroadcast, data), nil
}

// entry is a durable message: a stream entry of type typ with data.
func (p *streamsNamespace) entry(typ int, data []byte) message {
	return message{channel: p.stream, payload: data, durable: true, kind: typ}
}

// binaryBroadcastData is Node's form of a broadcast holding binary: the
// base64 of msgpack {packet: {type: 2, data: [event, ...args]}, opts}.
func binaryBroadcastData(sel selector, event string, args []any) ([]byte, error) {
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	sel = sel.wire()
	err := errors.Join(
		enc.EncodeMapLen(2),
		enc.EncodeString("packet"), enc.EncodeMapLen(2),
		enc.EncodeString("type"), enc.EncodeInt(packetEvent),
		enc.EncodeString("data"), encodeEventData(enc, event, args),
		enc.EncodeString("opts"), enc.EncodeMapLen(3),
		enc.EncodeString("rooms"), encodeStrings(enc, sel.Rooms),
		enc.EncodeString("except"), encodeStrings(enc, sel.Except),
		enc.EncodeString("flags"), enc.EncodeMapLen(0),
	)
	if err != nil {
		return nil, errorf("encode %q: %w", event, err)
	}
	return base64.StdEncoding.AppendEncode(nil, buf.Bytes()), nil
}

// hasBinary reports whether v holds a []byte (Node's hasBinary), looking
// into slices and maps a few levels deep.
func hasBinary(v any, depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch x := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range x {
			if hasBinary(e, depth+1) {
				return true
			}
		}
	case map[string]any:
		for _, e := range x {
			if hasBinary(e, depth+1) {
				return true
			}
		}
	}
	return false
}

func (p *streamsNamespace) encodeRequest(r request) (message, error) {
	typ, d, err := shardedRequest(r)
	if err != nil {
		return message{}, err
	}
	switch typ {
	case shardedSocketsJoin, shardedSocketsLeave, shardedDisconnectSockets:
		data, err := json.Marshal(d)
		return p.entry(typ, data), err
	}
	payload, err := p.sh.message(typ, d)
	if err == nil {
		payload, err = jsonToMsgpack(payload)
	}
	return message{channel: p.sh.ch.broadcast, payload: payload}, err
}

func (p *streamsNamespace) encodeAnswer(to request, a answer) (message, error) {
	m, err := p.sh.encodeAnswer(to, a)
	if err == nil {
		m.payload, err = jsonToMsgpack(m.payload)
	}
	return m, err
}

// Requests come from pub/sub as msgpack (the sharded protocol's decoders
// read it), or from the stream decoded by the reader (decodeStreamEntry).
func (p *streamsNamespace) decodeRequest(msg string) (request, error) { return p.sh.decodeRequest(msg) }

func (p *streamsNamespace) decodeAnswer(msg string) (answer, error) { return p.sh.decodeAnswer(msg) }

// ping goes to the node holding the namespace's stream.
func (p *streamsNamespace) ping(c rueidis.Client) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(p.stream)
}

func (p *streamsNamespace) probeChannel() string { return p.sh.own }

func (p *streamsNamespace) countCommand(c rueidis.Client) (rueidis.Completed, string) {
	ch := p.sh.ch.broadcast
	if p.shardedPubSub {
		return c.B().PubsubShardnumsub().Channel(ch).Build(), ch
	}
	return c.B().PubsubNumsub().Channel(ch).Build(), ch
}

// streamEntry is a stream entry, read.
type streamEntry struct {
	typ   int
	queue queueKind // the worker that handles it
	skip  bool      // a message Node's streams adapter has no use for (heartbeats, adapter close)
	// msg is a broadcast in the form the namespace's decodeBroadcast reads
	// (entryMessage); req is a join, leave or disconnect, decoded.
	msg string
	req *request
}

// maxEntryUID bounds the uid of a broadcast entry (entryMessage gives its
// length one byte): Node's are 16 characters, ours 6.
const maxEntryUID = 255

// decodeStreamEntry reads the fields of a stream entry: uid, nsp, type and
// an optional data, JSON when it starts with '{', else base64 msgpack
// (Node's choice when a broadcast holds binary). A join, leave or
// disconnect is decoded here, its data straight into the request; a
// broadcast is only checked and paired with its uid (entryMessage): the
// broadcast worker decodes it (streamsNamespace.decodeBroadcast), so the
// reader goes back to Redis sooner. Any field it cannot use is an error;
// it never panics.
func decodeStreamEntry(fields map[string]string) (streamEntry, error) {
	var e streamEntry
	uid, nsp, data := fields["uid"], fields["nsp"], fields["data"]
	if nsp == "" {
		return e, malformed("stream entry without nsp")
	}
	typ, err := strconv.Atoi(fields["type"])
	if err != nil || typ < 1 || typ > 13 {
		return e, malformed("stream entry type %q", fields["type"])
	}
	e.typ = typ
	switch typ {
	case shardedBroadcast:
		if len(uid) > maxEntryUID {
			return e, malformed("stream entry uid of %d bytes", len(uid))
		}
		e.queue, e.msg = toBroadcasts, entryMessage(uid, data)
	case shardedSocketsJoin, shardedSocketsLeave, shardedDisconnectSockets:
		r, err := entryRequest(typ, uid, nsp, data)
		if err != nil {
			return e, err
		}
		e.queue, e.req = toRequests, &r
	case shardedInitialHeartbeat, shardedHeartbeat, shardedAdapterClose:
		e.skip = true
	default:
		return e, malformed("stream entry of type %d", typ)
	}
	return e, nil
}

// entryRequest decodes the data of a join, leave or disconnect entry:
// JSON, as Node and this adapter write it for these (they hold no binary).
func entryRequest(typ int, uid, nsp, data string) (request, error) {
	var d shardedData
	if data != "" {
		if data[0] != '{' {
			return request{}, malformed("stream entry of type %d with binary data", typ)
		}
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			return request{}, malformed("stream entry data: %v", err)
		}
	}
	return shardedRequestOf(shardedMessage{Type: typ, UID: uid, Nsp: nsp}, d)
}

// entryMessage is a broadcast entry as it waits in the broadcast queue:
// the length of its uid in one byte, the uid, then its data as the entry
// holds it.
func entryMessage(uid, data string) string {
	return string([]byte{byte(len(uid))}) + uid + data
}

// decodeBroadcast decodes a broadcast entry (entryMessage) straight into
// the frame: the data's JSON in one pass, or its msgpack with the bounded
// decoder, the arguments left raw until a local socket is to get them. A
// broadcast that wants acknowledgements (a requestId) is a request, as in
// the sharded protocol.
func (p *streamsNamespace) decodeBroadcast(msg string) (broadcastFrame, *request, error) {
	var f broadcastFrame
	if msg == "" || len(msg) < 1+int(msg[0]) {
		return f, nil, malformed("broadcast entry of %d bytes", len(msg))
	}
	n := 1 + int(msg[0])
	data := msg[n:]
	f.uid, f.nsp = msg[1:n], p.nsp
	var id string
	var err error
	switch {
	case data == "":
		err = malformed("broadcast entry without data")
	case data[0] == '{':
		id, err = decodeJSONBroadcastData(data, &f)
	default:
		id, err = decodeBinaryBroadcastData(data, &f)
	}
	if err != nil || id == "" {
		return f, nil, err
	}
	return f, &request{uid: f.uid, id: id, nsp: f.nsp, typ: typeBroadcast, frame: f}, nil
}

// entryData is what a receiver reads of a broadcast entry's JSON data
// {packet: {type, data: [event, ...args]}, opts: {rooms, except, flags},
// requestId}; the flags change nothing for it.
type entryData struct {
	Packet    jsonPacket `json:"packet"` // none: type 0, which event refuses
	Opts      selector   `json:"opts"`   // rooms and except, by their names
	RequestID string     `json:"requestId"`
}

// decodeJSONBroadcastData reads a broadcast's JSON data into f in one
// pass, numbers kept as their JSON text (json.Number), and returns its
// requestId. The data must be one JSON value.
func decodeJSONBroadcastData(data string, f *broadcastFrame) (string, error) {
	var d entryData
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return "", malformed("broadcast entry data: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", malformed("trailing bytes after broadcast entry data")
	}
	var err error
	f.sel = d.Opts
	f.event, f.args, err = d.Packet.event()
	return d.RequestID, err
}

// decodeBinaryBroadcastData reads a broadcast's base64 msgpack data into
// f, and returns its requestId.
func decodeBinaryBroadcastData(data string, f *broadcastFrame) (string, error) {
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", malformed("broadcast entry data: %v", err)
	}
	dec := newDecoder(string(b))
	defer dec.release()
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return "", malformed("broadcast entry data is not a map")
	}
	var id string
	havePacket := false
	for range n {
		key, err := dec.str()
		if err != nil {
			return "", malformed("broadcast entry data key: %v", err)
		}
		switch key {
		case "packet":
			var typ int
			if typ, err = decodePacket(dec, f, false); err == nil && typ != packetEvent && typ != packetBinaryEvent {
				err = malformed("packet type %d", typ)
			}
			havePacket = true
		case "opts":
			if c, _ := dec.PeekCode(); c == msgpcode.Nil { // none: every socket, as JSON null reads
				err = dec.skip(0)
			} else {
				f.sel, err = decodeSelector(dec)
			}
		case "requestId":
			id, err = dec.str()
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return "", malformed("broadcast entry data %q: %v", key, err)
		}
	}
	if _, err := dec.PeekCode(); err == nil {
		return "", malformed("trailing bytes after broadcast entry data")
	}
	if !havePacket {
		return "", malformed("broadcast entry without packet")
	}
	return id, nil
}

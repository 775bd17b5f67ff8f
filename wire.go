package redisadapter

// The wire format of @socket.io/redis-adapter 8.x (the classic adapter:
// PUBLISH/SUBSCRIBE), followed exactly so Go and Node.js servers can share
// one Redis:
//
//   - broadcasts: msgpack [uid, packet, opts] on "<key>#<nsp>#" or, for
//     exactly one room, "<key>#<nsp>#<room>#"; packet is
//     {type: 2, data: [event, ...args], nsp}, opts is
//     {rooms: [...], except: [...], flags: {}};
//   - requests: JSON {uid, requestId, type, ...} on "<key>-request#<nsp>#"
//     (type 7 is msgpack);
//   - responses: JSON {requestId, ...} on "<key>-response#<nsp>#" or on the
//     requester's own "<key>-response#<nsp>#<uid>#".
//
// Every decoder here returns an error for input it cannot use; none panics.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// requestType is the "type" field of a request or response, numbered as in
// Node's RequestType enum.
type requestType int

const (
	typeSockets              requestType = 0
	typeAllRooms             requestType = 1
	typeRemoteJoin           requestType = 2
	typeRemoteLeave          requestType = 3
	typeRemoteDisconnect     requestType = 4
	typeRemoteFetch          requestType = 5
	typeServerSideEmit       requestType = 6
	typeBroadcast            requestType = 7
	typeBroadcastClientCount requestType = 8
	typeBroadcastAck         requestType = 9
)

func (t requestType) String() string {
	switch t {
	case typeSockets:
		return "sockets"
	case typeAllRooms:
		return "allRooms"
	case typeRemoteJoin:
		return "socketsJoin"
	case typeRemoteLeave:
		return "socketsLeave"
	case typeRemoteDisconnect:
		return "disconnectSockets"
	case typeRemoteFetch:
		return "fetchSockets"
	case typeServerSideEmit:
		return "serverSideEmit"
	case typeBroadcast:
		return "broadcastWithAck"
	}
	return fmt.Sprintf("type %d", int(t))
}

// Packet types of the socket.io protocol that a broadcast may carry.
const (
	packetEvent       = 2
	packetBinaryEvent = 5
)

// channels holds the channel names of one namespace. They are built here and
// nowhere else.
type channels struct {
	broadcast string // "<key>#<nsp>#"; a room channel appends "<room>#"
	request   string // "<key>-request#<nsp>#"
	response  string // "<key>-response#<nsp>#"; a node's own appends "<uid>#"
}

func newChannels(key, nsp string) channels {
	k := [2]string{key, nsp}
	channelNames.RLock()
	c, ok := channelNames.m[k]
	channelNames.RUnlock()
	if ok {
		return c
	}
	c = channels{
		broadcast: key + "#" + nsp + "#",
		request:   key + "-request#" + nsp + "#",
		response:  key + "-response#" + nsp + "#",
	}
	channelNames.Lock()
	if len(channelNames.m) < maxNamedNamespaces {
		channelNames.m[k] = c
	}
	channelNames.Unlock()
	return c
}

// channelNames memoizes newChannels: every message published or routed
// needs its namespace's names, and building them is three allocations.
// Bounded, since Emitter.Of takes any namespace name.
var channelNames = struct {
	sync.RWMutex
	m map[[2]string]channels
}{m: make(map[[2]string]channels)}

const maxNamedNamespaces = 1024

// pattern is what a node PSUBSCRIBEs to get every broadcast of the namespace.
func (c channels) pattern() string { return c.broadcast + "*" }

// forRooms is the channel a broadcast is published on: the room's own channel
// when it targets exactly one room (receivers without that room skip decoding).
func (c channels) forRooms(rooms []string) string {
	if len(rooms) == 1 {
		return c.broadcast + rooms[0] + "#"
	}
	return c.broadcast
}

// responseTo is the response channel of the node with the given uid.
func (c channels) responseTo(uid string) string { return c.response + uid + "#" }

// roomOf returns the room named by a broadcast channel ("" for the
// namespace-wide channel) and whether the channel belongs to c at all.
func (c channels) roomOf(channel string) (string, bool) {
	if !strings.HasPrefix(channel, c.broadcast) {
		return "", false
	}
	rest := channel[len(c.broadcast):]
	if rest == "" {
		return "", true
	}
	if !strings.HasSuffix(rest, "#") {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// selector chooses sockets: those in any of Rooms (all when empty) and in
// none of Except. It is the "opts" object of the wire format.
type selector struct {
	Rooms  []string `json:"rooms" msgpack:"rooms"`
	Except []string `json:"except" msgpack:"except"`
}

// orEmpty returns *s, or the empty selector for nil.
func (s *selector) orEmpty() selector {
	if s == nil {
		return selector{}
	}
	return *s
}

// wire returns s with nil slices replaced by empty ones: Node reads them with
// new Set(...) and the spread operator, and the capture shows [] not null.
func (s selector) wire() selector {
	if s.Rooms == nil {
		s.Rooms = []string{}
	}
	if s.Except == nil {
		s.Except = []string{}
	}
	return s
}

// broadcastFrame is a decoded broadcast.
type broadcastFrame struct {
	uid   string
	nsp   string
	event string
	args  []any
	sel   selector
	// rawArgs holds a classic frame's arguments still in msgpack (argc of
	// them), for arguments to decode once a local socket is to get them:
	// a node without one never pays for it.
	rawArgs string
	argc    int
}

// arguments returns the frame's arguments, decoding them if they are raw.
func (f broadcastFrame) arguments() ([]any, error) {
	if f.rawArgs == "" {
		return f.args, nil
	}
	dec := newDecoder(f.rawArgs)
	defer dec.release()
	args := make([]any, 0, min(f.argc, 64))
	for range f.argc {
		v, err := dec.value(0)
		if err != nil {
			return nil, malformed("event %q argument: %v", f.event, err)
		}
		args = append(args, v)
	}
	return args, nil
}

var errMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

// newEncoder returns a msgpack encoder that writes to buf and encodes Go
// structs by their json tags, so a value reaches a client on another node
// with the same field names it would have if emitted locally.
func newEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(buf)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	return enc
}

// encoderBuffer is an encoder and the buffer it writes to, reused across
// broadcasts (sync.Pool): a frame would otherwise cost an encoder and the
// buffer's growth in allocations.
type encoderBuffer struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := new(encoderBuffer)
	e.enc = newEncoder(&e.buf)
	return e
}}

// maxPooledBuffer keeps one huge frame from pinning its buffer in the pool.
const maxPooledBuffer = 64 << 10

// encodeBroadcast encodes [uid, {type, data: [event, ...args], nsp}, {rooms, except, flags}].
func encodeBroadcast(uid, nsp string, sel selector, event string, args []any) ([]byte, error) {
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
		return nil, fmt.Errorf("redisadapter: encode %q: %w", event, err)
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// encodePacket writes the packet {type, data: [event, ...args], nsp} of
// a broadcast.
func encodePacket(enc *msgpack.Encoder, nsp, event string, args []any) error {
	return errors.Join(
		enc.EncodeMapLen(3),
		enc.EncodeString("type"), enc.EncodeInt(packetEvent),
		enc.EncodeString("data"), encodeEventData(enc, event, args),
		enc.EncodeString("nsp"), enc.EncodeString(nsp),
	)
}

// encodeOpts writes the opts {rooms, except, flags} of a broadcast; flags
// holds Node's timeout flag (milliseconds) when timeoutMS is set, as a
// broadcast with acknowledgements carries it, and is empty otherwise.
func encodeOpts(enc *msgpack.Encoder, sel selector, timeoutMS int64) error {
	sel = sel.wire()
	err := errors.Join(
		enc.EncodeMapLen(3),
		enc.EncodeString("rooms"), encodeStrings(enc, sel.Rooms),
		enc.EncodeString("except"), encodeStrings(enc, sel.Except),
		enc.EncodeString("flags"),
	)
	if timeoutMS <= 0 {
		return errors.Join(err, enc.EncodeMapLen(0))
	}
	return errors.Join(err, enc.EncodeMapLen(1), enc.EncodeString("timeout"), enc.EncodeInt(timeoutMS))
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
		enc.EncodeString("uid"), enc.EncodeString(r.UID),
		enc.EncodeString("requestId"), enc.EncodeString(r.RequestID),
		enc.EncodeString("type"), enc.EncodeInt(int64(typeBroadcast)),
		enc.EncodeString("packet"), encodePacket(enc, f.nsp, f.event, f.args),
		enc.EncodeString("opts"), encodeOpts(enc, f.sel, r.ackTimeout.Milliseconds()),
	)
	if err != nil {
		return nil, fmt.Errorf("redisadapter: encode %q: %w", f.event, err)
	}
	return buf.Bytes(), nil
}

// encodeStrings writes ss as Encode would (nil as nil), without its
// reflection: every broadcast carries two of them.
func encodeStrings(enc *msgpack.Encoder, ss []string) error {
	if ss == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(ss)); err != nil {
		return err
	}
	for _, s := range ss {
		if err := enc.EncodeString(s); err != nil {
			return err
		}
	}
	return nil
}

func encodeEventData(enc *msgpack.Encoder, event string, args []any) error {
	if err := enc.EncodeArrayLen(1 + len(args)); err != nil {
		return err
	}
	if err := enc.EncodeString(event); err != nil {
		return err
	}
	for _, a := range args {
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return nil
}

// decoder reads msgpack from untrusted input. Arrays and maps go through
// value, which checks each declared length against the bytes left and
// bounds nesting: the library's own generic decoding preallocates whatever
// length a header claims (one 13-byte frame asked for 43 GB) and recurses
// without limit.
type decoder struct {
	*msgpack.Decoder
	s string
	r *strings.Reader // unbuffered (a strings.Reader is a ByteScanner): Len is what is left
}

// offset is how far into s the decoder has read.
func (d *decoder) offset() int { return len(d.s) - d.r.Len() }

// maxDepth bounds the nesting of arrays and maps in an argument.
const maxDepth = 32

// decoders are reused (sync.Pool): a message would otherwise cost a reader,
// a library decoder and its buffer in allocations.
var decoders = sync.Pool{New: func() any {
	r := strings.NewReader("")
	dec := msgpack.NewDecoder(r)
	dec.UseLooseInterfaceDecoding(true)
	return &decoder{Decoder: dec, r: r}
}}

// newDecoder returns a decoder of s; release it when done.
func newDecoder(s string) *decoder {
	d := decoders.Get().(*decoder)
	d.s = s
	d.r.Reset(s)
	d.ResetReader(d.r) // keeps the loose-interface flag
	return d
}

// release returns d to the pool. Nothing d decoded refers to it: values are
// copies, and str's substrings point into the message.
func (d *decoder) release() {
	d.s = ""
	d.r.Reset("")
	decoders.Put(d)
}

// str reads a string (or nil, as "") as a substring of the message, without
// copying: the head of a frame is read on every message, and the message
// is bounded by MaxMessageSize.
func (d *decoder) str() (string, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		return "", err
	}
	n := 0
	switch {
	case c == msgpcode.Nil:
		return "", nil
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8:
		n, err = d.length(1)
	case c == msgpcode.Str16:
		n, err = d.length(2)
	case c == msgpcode.Str32:
		n, err = d.length(4)
	default:
		return "", malformed("code 0x%x is not a string", c)
	}
	if err != nil {
		return "", err
	}
	if n > d.r.Len() {
		return "", malformed("string of %d bytes in %d", n, d.r.Len())
	}
	start := d.offset()
	_, err = d.r.Seek(int64(n), io.SeekCurrent)
	return d.s[start : start+n], err
}

// value decodes any value: numbers as int64, uint64 or float64, maps as
// map[string]any, arrays as []any.
func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, malformed("nested deeper than %d", maxDepth)
	}
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil || n > d.r.Len() {
			return nil, malformed("array of %d elements in %d bytes", n, d.r.Len())
		}
		out := make([]any, 0, max(n, 0))
		for range n {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil || n > d.r.Len()/2 {
			return nil, malformed("map of %d entries in %d bytes", n, d.r.Len())
		}
		out := make(map[string]any, max(n, 0))
		for range n {
			k, err := d.str()
			if err != nil {
				return nil, malformed("map key: %v", err)
			}
			// A copy: the map outlives the message.
			if out[strings.Clone(k)], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		// skip checks a string's, binary's or extension's length against
		// the bytes left; the library would first grow its buffer, which a
		// pooled decoder keeps, toward whatever the header claims.
		start := d.offset()
		if err := d.skip(depth); err != nil {
			return nil, err
		}
		if _, err := d.r.Seek(int64(start), io.SeekStart); err != nil {
			return nil, err
		}
		return d.DecodeInterfaceLoose()
	}
}

// skip discards one value without decoding it, with the checks of value:
// every declared length is checked against the bytes left before it is
// skipped (the library's Skip allocates whatever a string header claims).
func (d *decoder) skip(depth int) error {
	if depth > maxDepth {
		return malformed("nested deeper than %d", maxDepth)
	}
	c, err := d.r.ReadByte()
	if err != nil {
		return err
	}
	n := 0 // bytes after the header
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case msgpcode.IsFixedArray(c):
		return d.skipElems(int(c&msgpcode.FixedArrayMask), depth)
	case msgpcode.IsFixedMap(c):
		return d.skipElems(2*int(c&msgpcode.FixedMapMask), depth)
	case c == msgpcode.Uint8, c == msgpcode.Int8:
		n = 1
	case c == msgpcode.Uint16, c == msgpcode.Int16:
		n = 2
	case c == msgpcode.Uint32, c == msgpcode.Int32, c == msgpcode.Float:
		n = 4
	case c == msgpcode.Uint64, c == msgpcode.Int64, c == msgpcode.Double:
		n = 8
	case c == msgpcode.FixExt1, c == msgpcode.FixExt2, c == msgpcode.FixExt4, c == msgpcode.FixExt8, c == msgpcode.FixExt16:
		n = 1 + 1<<(c-msgpcode.FixExt1) // type byte, then 1 to 16 bytes
	case c == msgpcode.Str8, c == msgpcode.Bin8, c == msgpcode.Ext8:
		n, err = d.length(1)
	case c == msgpcode.Str16, c == msgpcode.Bin16, c == msgpcode.Ext16:
		n, err = d.length(2)
	case c == msgpcode.Str32, c == msgpcode.Bin32, c == msgpcode.Ext32:
		n, err = d.length(4)
	case c == msgpcode.Array16, c == msgpcode.Map16, c == msgpcode.Array32, c == msgpcode.Map32:
		width := 2
		if c == msgpcode.Array32 || c == msgpcode.Map32 {
			width = 4
		}
		if n, err = d.length(width); err != nil {
			return err
		}
		if c == msgpcode.Map16 || c == msgpcode.Map32 {
			n *= 2
		}
		return d.skipElems(n, depth)
	default:
		return malformed("unknown msgpack code 0x%x", c)
	}
	if err != nil {
		return err
	}
	if c == msgpcode.Ext8 || c == msgpcode.Ext16 || c == msgpcode.Ext32 {
		n++ // the extension's type byte
	}
	if n > d.r.Len() {
		return malformed("value of %d bytes in %d", n, d.r.Len())
	}
	_, err = d.r.Seek(int64(n), io.SeekCurrent)
	return err
}

// skipElems skips n values nested one level below depth.
func (d *decoder) skipElems(n, depth int) error {
	if n < 0 || n > d.r.Len() { // negative: overflowed on a 32-bit int
		return malformed("%d elements in %d bytes", n, d.r.Len())
	}
	for range n {
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// length reads a big-endian length of width bytes.
func (d *decoder) length(width int) (int, error) {
	n := 0
	for range width {
		b, err := d.r.ReadByte()
		if err != nil {
			return 0, err
		}
		n = n<<8 | int(b)
	}
	if n < 0 { // a 32-bit int overflowed
		return 0, malformed("length over %d", math.MaxInt32)
	}
	return n, nil
}

// decodeBroadcast decodes a broadcast frame. A missing packet nsp means "/".
func decodeBroadcast(msg string) (broadcastFrame, error) {
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
	typ, err := decodePacket(dec, &f)
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

// decodePacket reads a socket.io packet map {type, data, nsp} into f and
// returns its type.
func decodePacket(dec *decoder, f *broadcastFrame) (int, error) {
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return 0, malformed("packet is not a map")
	}
	typ, haveData := -1, false
	f.nsp = "/"
	for range n {
		key, err := dec.str()
		if err != nil {
			return 0, malformed("packet key: %v", err)
		}
		switch key {
		case "type":
			if typ, err = dec.DecodeInt(); err != nil {
				return 0, malformed("packet type: %v", err)
			}
		case "nsp":
			if f.nsp, err = dec.str(); err != nil {
				return 0, malformed("packet nsp: %v", err)
			}
		case "data":
			if err = decodeEventData(dec, f); err != nil {
				return 0, err
			}
			haveData = true
		default:
			if err := dec.skip(0); err != nil {
				return 0, malformed("packet field %q: %v", key, err)
			}
		}
	}
	if !haveData {
		return 0, malformed("packet without data")
	}
	return typ, nil
}

// decodeEventData reads [event, ...args] into f, leaving the arguments raw
// (checked, not decoded).
func decodeEventData(dec *decoder, f *broadcastFrame) error {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 1 {
		return malformed("event data is not a non-empty array")
	}
	if f.event, err = dec.str(); err != nil {
		return malformed("event name: %v", err)
	}
	start := dec.offset()
	for range n - 1 {
		if err := dec.skip(0); err != nil {
			return malformed("event %q argument: %v", f.event, err)
		}
	}
	f.rawArgs, f.argc = dec.s[start:dec.offset()], n-1
	return nil
}

// decodeSelector reads {rooms, except, flags}; flags are skipped (local is
// never published, the others do not change what a receiver does).
func decodeSelector(dec *decoder) (selector, error) {
	var s selector
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return s, malformed("broadcast opts is not a map")
	}
	for range n {
		key, err := dec.str()
		if err != nil {
			return s, malformed("opts key: %v", err)
		}
		switch key {
		case "rooms":
			s.Rooms, err = decodeStrings(dec)
		case "except":
			s.Except, err = decodeStrings(dec)
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return s, malformed("opts %q: %v", key, err)
		}
	}
	return s, nil
}

func decodeStrings(dec *decoder) ([]string, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]string, 0, min(n, 64))
	for range n {
		s, err := dec.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// request is a request between nodes. Zero fields are left out, as Node
// leaves them out; each type sets the fields Node sets for it.
type request struct {
	UID       string          `json:"uid"`
	RequestID string          `json:"requestId,omitempty"`
	Type      requestType     `json:"type"`
	Opts      *selector       `json:"opts,omitempty"`
	Rooms     []string        `json:"rooms,omitempty"`
	Close     *bool           `json:"close,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`

	// The legacy per-socket form of join/leave/disconnect.
	SID  string `json:"sid,omitempty"`
	Room string `json:"room,omitempty"`

	// Type 7 (broadcast with acknowledgements) only; it comes as msgpack.
	frame broadcastFrame
	// ackTimeout is the timeout flag of a type 7 request this node sends.
	ackTimeout time.Duration
	// nsp is the namespace a sharded message names ("" in classic ones,
	// whose channel names it).
	nsp string
}

// decodeRequest decodes a request: JSON when it starts with '{', else msgpack
// (Node sends type 7 that way).
func decodeRequest(msg string) (request, error) {
	var r request
	if strings.HasPrefix(msg, "{") {
		if err := json.Unmarshal([]byte(msg), &r); err != nil {
			return r, malformed("request: %v", err)
		}
		return r, nil
	}
	return decodeMsgpackRequest(msg)
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
	r.Type = -1
	for range n {
		key, err := dec.str()
		if err != nil {
			return r, malformed("request key: %v", err)
		}
		switch key {
		case "uid":
			r.UID, err = dec.str()
		case "requestId":
			r.RequestID, err = dec.str()
		case "type":
			var t int
			t, err = dec.DecodeInt()
			r.Type = requestType(t)
		case "packet":
			_, err = decodePacket(dec, &r.frame)
		case "opts":
			r.frame.sel, err = decodeSelector(dec)
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return r, malformed("request %q: %v", key, err)
		}
	}
	r.frame.uid = r.UID
	return r, nil
}

// response is a response to a request, decoded from any node. UID is ours:
// Go nodes add it so a requester knows which node holds a fetched socket;
// Node.js nodes leave it out.
type response struct {
	Type        requestType     `json:"type,omitempty"`
	RequestID   string          `json:"requestId"`
	UID         string          `json:"uid,omitempty"`
	Rooms       []string        `json:"rooms,omitempty"`
	Sockets     json.RawMessage `json:"sockets,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	ClientCount int             `json:"clientCount,omitempty"`
	// Ack is a client's acknowledgement, as JSON: the packet of a
	// broadcast ack (classic type 9, which comes as msgpack).
	Ack json.RawMessage `json:"-"`
}

// decodeResponse decodes a response. Msgpack responses (type 9, acks of a
// broadcast with acknowledgements) yield their requestId, type, client
// count and packet (in Ack, as JSON).
func decodeResponse(msg string) (response, error) {
	var r response
	if strings.HasPrefix(msg, "{") {
		if err := json.Unmarshal([]byte(msg), &r); err != nil {
			return r, malformed("response: %v", err)
		}
		return r, nil
	}
	dec := newDecoder(msg)
	defer dec.release()
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return r, malformed("response is neither JSON nor a msgpack map")
	}
	for range n {
		key, err := dec.str()
		if err != nil {
			return r, malformed("response key: %v", err)
		}
		switch key {
		case "requestId":
			r.RequestID, err = dec.str()
		case "type":
			var t int
			t, err = dec.DecodeInt()
			r.Type = requestType(t)
		case "clientCount":
			r.ClientCount, err = dec.DecodeInt()
		case "packet":
			var v any
			if v, err = dec.value(0); err == nil {
				r.Ack, err = json.Marshal(v)
			}
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return r, malformed("response %q: %v", key, err)
		}
	}
	return r, nil
}

// classic is the protocol of Node's createAdapter: PUBLISH/PSUBSCRIBE for
// broadcasts, PUBLISH/SUBSCRIBE for requests and answers.
type classic struct{}

func (classic) subscriptions(c rueidis.Client, key, nsp, uid string) []subscription {
	ch := newChannels(key, nsp)
	return []subscription{
		{
			build:  func() rueidis.Completed { return c.B().Psubscribe().Pattern(ch.pattern()).Build() },
			routes: map[string]queueKind{ch.pattern(): toBroadcasts},
		},
		{
			// Servers are counted with PUBSUB NUMSUB of this channel, which
			// node-redis sums over the masters only: keying the SUBSCRIBE
			// by its slot keeps it on a master in a cluster.
			build:  func() rueidis.Completed { return c.B().Subscribe().Channel(ch.request).Build().SetSlot(ch.request) },
			routes: map[string]queueKind{ch.request: toRequests},
		},
		{
			build:  func() rueidis.Completed { return c.B().Subscribe().Channel(ch.response, ch.responseTo(uid)).Build() },
			routes: map[string]queueKind{ch.response: toResponses, ch.responseTo(uid): toResponses},
		},
	}
}

func (classic) roomOf(key, nsp, channel string) string {
	room, _ := newChannels(key, nsp).roomOf(channel)
	return room
}

// fromNode looks at the frame's head, [uid, ...]: a fixarray of 3, then
// the uid as a fixstr (a node uid is 6 characters, in Node too). Any other head
// answers false, and the frame is decoded.
func (classic) fromNode(msg, uid string) bool {
	n := len(uid)
	return n < 32 && len(msg) > 2+n && msg[0] == 0x93 && msg[1] == 0xa0|byte(n) && msg[2:2+n] == uid
}

func (classic) encodeBroadcast(key, uid, nsp string, sel selector, event string, args []any) (string, []byte, error) {
	payload, err := encodeBroadcast(uid, nsp, sel, event, args)
	return newChannels(key, nsp).forRooms(sel.Rooms), payload, err
}

func (classic) encodeRequest(key, nsp string, r request) (string, []byte, error) {
	var payload []byte
	var err error
	if r.Type == typeBroadcast {
		payload, err = encodeBroadcastRequest(r)
	} else {
		payload, err = json.Marshal(r)
	}
	return newChannels(key, nsp).request, payload, err
}

// encodeAnswer answers on the requester's own response channel, which
// every node (Go or Node.js) subscribes to: unlike the shared one, it
// spares the other nodes from reading the answer.
func (classic) encodeAnswer(key, nsp, uid string, to request, a answer) (string, []byte, error) {
	ch := newChannels(key, nsp)
	channel := ch.response
	if to.UID != "" {
		channel = ch.responseTo(to.UID)
	}
	var body map[string]any
	switch to.Type {
	case typeSockets:
		body = map[string]any{"requestId": to.RequestID, "uid": uid, "sockets": nonNil(a.ids)}
	case typeAllRooms:
		body = map[string]any{"requestId": to.RequestID, "uid": uid, "rooms": nonNil(a.rooms)}
	case typeRemoteFetch:
		body = map[string]any{"requestId": to.RequestID, "uid": uid, "sockets": nonNil(a.sockets)}
	case typeServerSideEmit:
		body = map[string]any{"type": typeServerSideEmit, "requestId": to.RequestID, "data": a.ack}
	case typeBroadcast:
		if a.clientCount != nil {
			body = map[string]any{"type": typeBroadcastClientCount, "requestId": to.RequestID, "clientCount": *a.clientCount}
			break
		}
		// Node sends acknowledgements as msgpack.
		payload, err := msgpack.Marshal(map[string]any{"type": typeBroadcastAck, "requestId": to.RequestID, "packet": a.ack})
		return channel, payload, err
	default: // the legacy per-socket join, leave and disconnect
		body = map[string]any{"requestId": to.RequestID}
	}
	payload, err := json.Marshal(body)
	return channel, payload, err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (classic) decodeBroadcast(msg string) (broadcastFrame, error) { return decodeBroadcast(msg) }
func (classic) decodeRequest(msg string) (request, error)          { return decodeRequest(msg) }
func (classic) decodeResponse(msg string) (response, error)        { return decodeResponse(msg) }

// publish sends every PUBLISH of a namespace through the node owning the
// slot of the namespace's name: a cluster client otherwise sends each
// PUBLISH to a random node, and the cluster bus would deliver two messages
// of one sender out of order. Outside a cluster the slot is ignored.
func (classic) publish(c rueidis.Client, channel string, payload []byte, _ string, _ uint64) rueidis.Completed {
	return c.B().Publish().Channel(channel).Message(rueidis.BinaryString(payload)).Build().SetSlot(namespaceOf(channel))
}

func (classic) ping(c rueidis.Client, key, nsp string) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(nsp)
}

// namespaceOf returns the namespace part of a channel name
// ("<key>...#<nsp>#..."); neither key nor namespace holds a '#'.
func namespaceOf(channel string) string {
	_, rest, _ := strings.Cut(channel, "#")
	nsp, _, _ := strings.Cut(rest, "#")
	return nsp
}

// countCommand is Node's serverCount: PUBSUB NUMSUB of the request
// channel, which every node SUBSCRIBEs.
func (classic) countCommand(c rueidis.Client, key, nsp string) (rueidis.Completed, string) {
	ch := newChannels(key, nsp).request
	return c.B().PubsubNumsub().Channel(ch).Build(), ch
}

func (classic) asksFor(requestType) bool { return true }

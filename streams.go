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
//     whose number is not past the last one it read from that producer, the
//     second copy a resend leaves when the first did reach Redis;
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
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/vmihailenco/msgpack/v5"
)

var _ Connector = Streams{}

// Streams runs the adapter (or an Emitter) in streams mode over any of the
// other connectors: wire-compatible with Node's
// @socket.io/redis-streams-adapter 0.3.x with the same settings. Unlike
// pub/sub, a broadcast published while a node's connection to Redis is down
// is not lost for it: the node reads it when it is back, in order, once.
// What can still be lost (README, "pub/sub or streams?"): entries trimmed
// before a node read them (more than MaxLen published while it was away;
// counted in Stats.StreamGaps), a Sentinel failover's unreplicated tail,
// and, without AOF, everything on a Redis restart. Requests and answers go
// through pub/sub, as in Node, and are lost in an outage (the requester
// times out).
//
// Each stream lives on one Redis node: in a cluster, on the shard owning
// its key's slot; Count spreads namespaces over several streams.
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

func (s Streams) clientOption() (rueidis.ClientOption, error) {
	if s.Connector == nil {
		return rueidis.ClientOption{}, fmt.Errorf("%w: Streams needs a Connector", ErrConfig)
	}
	if _, nested := s.Connector.(Streams); nested {
		return rueidis.ClientOption{}, fmt.Errorf("%w: Streams inside Streams", ErrConfig)
	}
	switch {
	case s.Count < 0 || s.MaxLen < 0 || s.ReadCount < 0:
		return rueidis.ClientOption{}, fmt.Errorf("%w: Streams Count, MaxLen and ReadCount must not be negative", ErrConfig)
	case strings.ContainsRune(s.Name, 0):
		return rueidis.ClientOption{}, fmt.Errorf("%w: Streams Name holds a NUL byte", ErrConfig)
	}
	return s.Connector.clientOption()
}

func (s Streams) protocol() protocol {
	p := streams{name: s.Name, count: s.Count, maxLen: s.MaxLen, readCount: s.ReadCount, shardedPubSub: s.ShardedPubSub}
	if c, ok := s.Connector.(Cluster); ok && c.Sharded {
		p.shardedPubSub = true
	}
	if p.name == "" {
		p.name = "socket.io"
	}
	if p.count == 0 {
		p.count = 1
	}
	if p.maxLen == 0 {
		p.maxLen = 10000
	}
	if p.readCount == 0 {
		p.readCount = 100
	}
	return p
}

// streams is the protocol; its settings have their defaults filled in.
type streams struct {
	name          string
	count         int
	maxLen        int
	readCount     int
	shardedPubSub bool
}

// streamFor is the stream of namespace nsp (Node's computeStreamName).
func (p streams) streamFor(nsp string) string {
	if p.count <= 1 {
		return p.name
	}
	return p.name + "-" + strconv.Itoa(int(hashCode(nsp))%p.count)
}

// hashCode is Node's hashCode: hash*31 + each UTF-16 code unit, wrapped to
// a signed 32-bit integer. Go's % keeps the sign as JavaScript's does, so a
// negative hash names a stream like "socket.io--1", as in Node.
func hashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 { // a surrogate pair in UTF-16
			r -= 0x10000
			h = h*31 + int32(0xD800+(r>>10))
			h = h*31 + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = h*31 + r
	}
	return h
}

// A durable message travels through the publisher as a "channel" naming
// the stream entry's head (streamMarker, stream, uid, nsp and type,
// NUL-separated) and a payload that is its data field: publish turns them
// into an XADD. A channel never starts with NUL (Key cannot, see validate).
const streamMarker = "\x00xadd\x00"

func streamDestination(stream, uid, nsp string, typ int) string {
	return streamMarker + stream + "\x00" + uid + "\x00" + nsp + "\x00" + strconv.Itoa(typ)
}

// isStreamEntry reports whether channel names a stream entry.
func isStreamEntry(channel string) bool { return strings.HasPrefix(channel, streamMarker) }

func (p streams) publish(c rueidis.Client, channel string, payload []byte, producer string, seq uint64) rueidis.Completed {
	if head, ok := strings.CutPrefix(channel, streamMarker); ok {
		f := strings.SplitN(head, "\x00", 4)
		if len(f) == 4 {
			return c.B().Xadd().Key(f[0]).Maxlen().Almost().Threshold(strconv.Itoa(p.maxLen)).Id("*").
				FieldValue().FieldValue("uid", f[1]).FieldValue("nsp", f[2]).FieldValue("type", f[3]).
				FieldValue("data", string(payload)).
				FieldValue("seq", producer+":"+strconv.FormatUint(seq, 10)).Build()
		}
	}
	if p.shardedPubSub {
		return c.B().Spublish().Channel(channel).Message(rueidis.BinaryString(payload)).Build()
	}
	return c.B().Publish().Channel(channel).Message(rueidis.BinaryString(payload)).Build().SetSlot(channel)
}

func (p streams) subscriptions(c rueidis.Client, key, nsp, uid string) []subscription {
	public := shardedChannel(key, nsp)
	own := public + uid + "#"
	if p.shardedPubSub { // one SSUBSCRIBE may not mix slots
		return []subscription{
			{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(public).Build() }, routes: map[string]queueKind{public: toRequests}},
			{build: func() rueidis.Completed { return c.B().Ssubscribe().Channel(own).Build() }, routes: map[string]queueKind{own: toResponses}},
		}
	}
	// Keyed by the public channel's slot, so that in a cluster the
	// subscription sits on a master, where the server count looks.
	return []subscription{{
		build:  func() rueidis.Completed { return c.B().Subscribe().Channel(public, own).Build().SetSlot(public) },
		routes: map[string]queueKind{public: toRequests, own: toResponses},
	}}
}

// roomOf: there are no room channels.
func (streams) roomOf(key, nsp, channel string) string { return "" }

// fromNode: the stream reader skips this node's entries before decoding.
func (streams) fromNode(msg, uid string) bool { return false }

func (p streams) encodeBroadcast(key, uid, nsp string, sel selector, event string, args []any) (string, []byte, error) {
	var data []byte
	var err error
	if hasBinary(args, 0) {
		data, err = binaryBroadcastData(sel, event, args)
	} else {
		var d shardedData
		if d, err = shardedBroadcastData(sel, event, args); err == nil {
			data, err = json.Marshal(d)
		}
	}
	if err != nil {
		return "", nil, err
	}
	return streamDestination(p.streamFor(nsp), uid, nsp, shardedBroadcast), data, nil
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
		return nil, fmt.Errorf("redisadapter: encode %q: %w", event, err)
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

func (p streams) encodeRequest(key, nsp string, r request) (string, []byte, error) {
	typ, d, err := shardedRequest(r)
	if err != nil {
		return "", nil, err
	}
	switch typ {
	case shardedSocketsJoin, shardedSocketsLeave, shardedDisconnectSockets:
		data, err := json.Marshal(d)
		return streamDestination(p.streamFor(nsp), r.UID, nsp, typ), data, err
	}
	payload, err := sharded{}.encode(typ, r.UID, nsp, d)
	if err == nil {
		payload, err = jsonToMsgpack(payload)
	}
	return shardedChannel(key, nsp), payload, err
}

func (p streams) encodeAnswer(key, nsp, uid string, to request, a answer) (string, []byte, error) {
	channel, payload, err := sharded{}.encodeAnswer(key, nsp, uid, to, a)
	if err == nil {
		payload, err = jsonToMsgpack(payload)
	}
	return channel, payload, err
}

// Every message reaches the decoders as ClusterAdapter JSON (or msgpack,
// from pub/sub), the sharded protocol's: the stream reader rebuilds it from
// the entry's fields (decodeStreamEntry).
func (streams) decodeBroadcast(msg string) (broadcastFrame, error) {
	return sharded{}.decodeBroadcast(msg)
}
func (streams) decodeRequest(msg string) (request, error)   { return sharded{}.decodeRequest(msg) }
func (streams) decodeResponse(msg string) (response, error) { return sharded{}.decodeResponse(msg) }

// ping goes to the node holding the namespace's stream.
func (p streams) ping(c rueidis.Client, key, nsp string) rueidis.Completed {
	return c.B().Ping().Build().SetSlot(p.streamFor(nsp))
}

func (p streams) countCommand(c rueidis.Client, key, nsp string) (rueidis.Completed, string) {
	ch := shardedChannel(key, nsp)
	if p.shardedPubSub {
		return c.B().PubsubShardnumsub().Channel(ch).Build(), ch
	}
	return c.B().PubsubNumsub().Channel(ch).Build(), ch
}

// asksFor: the ClusterAdapter protocol has no allRooms and no socket-id
// listing; the core answers those with a fetch.
func (streams) asksFor(t requestType) bool { return t != typeAllRooms && t != typeSockets }

// jsonToMsgpack re-encodes a JSON document as msgpack, keeping the order of
// object keys (Node's encoder writes them in insertion order) and integers
// as integers.
func jsonToMsgpack(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	if err := transcode(dec, enc, 0); err != nil {
		return nil, fmt.Errorf("redisadapter: msgpack: %w", err)
	}
	return buf.Bytes(), nil
}

// jsonNode is a parsed JSON value whose objects keep their key order.
type jsonNode struct {
	scalar any // json.Number, string, bool or nil
	keys   []string
	items  []jsonNode // an object's values or an array's elements
	kind   byte       // 0 scalar, '{' object, '[' array
}

func transcode(dec *json.Decoder, enc *msgpack.Encoder, depth int) error {
	n, err := parseJSON(dec, depth)
	if err != nil {
		return err
	}
	return n.encode(enc)
}

func parseJSON(dec *json.Decoder, depth int) (jsonNode, error) {
	if depth > maxDepth {
		return jsonNode{}, malformed("nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonNode{}, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return jsonNode{scalar: tok}, nil
	}
	n := jsonNode{kind: byte(d)}
	for dec.More() {
		if n.kind == '{' {
			k, err := dec.Token()
			if err != nil {
				return n, err
			}
			key, _ := k.(string)
			n.keys = append(n.keys, key)
		}
		item, err := parseJSON(dec, depth+1)
		if err != nil {
			return n, err
		}
		n.items = append(n.items, item)
	}
	_, err = dec.Token() // the closing delimiter
	return n, err
}

func (n jsonNode) encode(enc *msgpack.Encoder) error {
	switch n.kind {
	case '{':
		if err := enc.EncodeMapLen(len(n.items)); err != nil {
			return err
		}
		for i, item := range n.items {
			if err := enc.EncodeString(n.keys[i]); err != nil {
				return err
			}
			if err := item.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case '[':
		if err := enc.EncodeArrayLen(len(n.items)); err != nil {
			return err
		}
		for _, item := range n.items {
			if err := item.encode(enc); err != nil {
				return err
			}
		}
		return nil
	}
	if num, ok := n.scalar.(json.Number); ok {
		if i, err := num.Int64(); err == nil {
			return enc.EncodeInt(i)
		}
		f, err := num.Float64()
		if err != nil {
			return err
		}
		return enc.EncodeFloat64(f)
	}
	return enc.Encode(n.scalar)
}

// streamEntry is a decoded stream entry.
type streamEntry struct {
	typ      int
	uid, nsp string
	msg      string // the ClusterAdapter message as JSON, for the sharded decoders
}

// decodeStreamEntry reads the fields of a stream entry (uid, nsp, type and
// an optional data: JSON when it starts with '{', else base64 msgpack) into
// the ClusterAdapter message they stand for, as JSON: JSON data is put in
// as it is, and a bad one fails in the decoders that read the message. Any
// other field it cannot use is an error; it never panics, and the msgpack
// is read with the bounded decoder.
func decodeStreamEntry(fields map[string]string) (streamEntry, error) {
	e := streamEntry{uid: fields["uid"], nsp: fields["nsp"]}
	if e.nsp == "" {
		return e, malformed("stream entry without nsp")
	}
	typ, err := strconv.Atoi(fields["type"])
	if err != nil || typ < 1 || typ > 13 {
		return e, malformed("stream entry type %q", fields["type"])
	}
	e.typ = typ
	data := "null"
	switch d := fields["data"]; {
	case d == "":
	case d[0] == '{':
		// Not validated here: the decoders parse it, and fail on bad JSON.
		data = d
	default:
		b, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return e, malformed("stream entry data: %v", err)
		}
		dec := newDecoder(string(b))
		v, err := dec.value(0)
		_, peekErr := dec.PeekCode()
		dec.release()
		if err != nil {
			return e, malformed("stream entry data: %v", err)
		}
		if peekErr == nil { // a byte is left
			return e, malformed("trailing bytes after stream entry data")
		}
		b, err = json.Marshal(v)
		if err != nil {
			return e, malformed("stream entry data: %v", err)
		}
		data = string(b)
	}
	// Built by hand: json.Marshal would scan and copy the data once more.
	uid, _ := json.Marshal(e.uid)
	nsp, _ := json.Marshal(e.nsp)
	e.msg = `{"type":` + strconv.Itoa(typ) + `,"uid":` + string(uid) + `,"nsp":` + string(nsp) + `,"data":` + data + `}`
	return e, nil
}

// startStreams reads where each stream served by this node ends now, so
// that anything added after New returns reaches the node, and starts one
// reader per stream.
func (a *Adapter) startStreams(ctx, loopCtx context.Context, p streams) error {
	seen := make(map[string]bool)
	for _, name := range a.opts.Namespaces {
		stream := p.streamFor(name)
		if seen[stream] {
			continue
		}
		seen[stream] = true
		info, err := a.streamInfo(ctx, stream)
		if err != nil {
			return fmt.Errorf("redisadapter: read stream %q: %w", stream, err)
		}
		r := &streamReader{a: a, p: p, stream: stream, offset: info.last}
		a.spawn(func() { r.run(loopCtx) })
	}
	return nil
}

// streamState is what XINFO STREAM says about a stream.
type streamState struct {
	last       string // the last id added ("0-0": none yet)
	first      string // the first id still held ("": none)
	maxDeleted string // the highest id XDEL removed ("0-0": none, "": Redis < 7); trimming leaves it
	added      int64  // entries ever added (Redis 7; 0 before)
	length     int64  // entries held
}

// gapAfter reports whether entries added after offset were removed before
// a reader at offset read them. Trimming removes the oldest entries: when
// the first one held is past offset, the entries between are gone (when
// the trim ended exactly at offset nothing was lost, and it is counted
// anyway: the stream does not say).
func (s streamState) gapAfter(offset string) bool {
	if offset == "0-0" { // the stream was empty when the reader started
		return s.added > s.length
	}
	return idLess(offset, s.maxDeleted) || s.first != "" && idLess(offset, s.first)
}

func (a *Adapter) streamInfo(ctx context.Context, stream string) (streamState, error) {
	m, err := a.client.Do(ctx, a.client.B().XinfoStream().Key(stream).Build()).AsMap()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "no such key") {
			return streamState{last: "0-0"}, nil
		}
		return streamState{}, err
	}
	var s streamState
	last := m["last-generated-id"]
	if s.last, err = last.ToString(); err != nil {
		return s, err
	}
	if v, ok := m["max-deleted-entry-id"]; ok {
		s.maxDeleted, _ = v.ToString()
	}
	if v, ok := m["first-entry"]; ok && !v.IsNil() {
		if e, err := v.AsXRangeEntry(); err == nil {
			s.first = e.ID
		}
	}
	if v, ok := m["entries-added"]; ok {
		s.added, _ = v.AsInt64()
	}
	if v, ok := m["length"]; ok {
		s.length, _ = v.AsInt64()
	}
	return s, nil
}

// streamReader reads one stream from the last entry it read: XREAD BLOCK
// in batches of ReadCount, each entry handed to the broadcast or request
// queue, waiting for room there. So a node catching up holds at most
// ReadCount entries plus its queues, and requests and answers, which come
// on pub/sub, are not stuck behind the backlog.
type streamReader struct {
	a        *Adapter
	p        streams
	stream   string
	offset   string                   // the id of the last entry read
	produced map[string]*producedSeqs // per producer, the numbers read lately
}

// producedSeqs is what a reader read from one producer: its highest
// number, which of the seqWindow numbers below it it read, and the time (of
// the entry id) of the last entry.
type producedSeqs struct {
	high uint64
	seen [seqWindow / 64]uint64 // bit n%seqWindow: number n read
	ms   uint64
}

// seqWindow bounds how far back a resent copy is recognized: a resend
// carries at most one batch (maxBatch) of entries.
const seqWindow = 4 * maxBatch

// Producers unheard of for producerIdle are forgotten once there are more
// than maxProducers: a resend comes within seconds, and a restarted node is
// a new producer.
const (
	maxProducers = 1024
	producerIdle = 10 * 60 * 1000 // ms
)

// duplicate reports whether e is the second copy of an entry already read
// (its producer resent it), and records it otherwise. An entry without a
// number (Node's) is never one. A number read out of order is not a
// duplicate (a resent entry can follow a later one that went through);
// one more than seqWindow below the highest is taken for one.
func (r *streamReader) duplicate(e rueidis.XRangeEntry) bool {
	producer, n, ok := strings.Cut(e.FieldValues["seq"], ":")
	if !ok {
		return false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return false
	}
	ms, _, _ := parseID(e.ID)
	p := r.produced[producer]
	if p == nil {
		if r.produced == nil {
			r.produced = make(map[string]*producedSeqs)
		}
		if len(r.produced) >= maxProducers {
			for k, q := range r.produced {
				if q.ms+producerIdle < ms {
					delete(r.produced, k)
				}
			}
		}
		p = &producedSeqs{}
		r.produced[producer] = p
	}
	p.ms = ms
	switch {
	case seq > p.high:
		for i := p.high + 1; i < seq && i <= p.high+seqWindow; i++ {
			p.seen[i%seqWindow/64] &^= 1 << (i % 64) // numbers skipped: not read
		}
		p.high = seq
	case seq+seqWindow <= p.high:
		return true
	case p.seen[seq%seqWindow/64]&(1<<(seq%64)) != 0:
		return true
	}
	p.seen[seq%seqWindow/64] |= 1 << (seq % 64)
	return false
}

// blockTime is how long one XREAD waits for an entry (Node's blockTimeInMs).
const blockTime = 5 * time.Second

func (r *streamReader) run(ctx context.Context) {
	a := r.a
	backoff := minBackoff
	var downSince time.Time
	recheck := false // after an outage: check the stream before reading it again
	for {
		if recheck && r.checkGap(ctx) {
			recheck = false
		}
		cmd := a.client.B().Xread().Count(int64(r.p.readCount)).Block(blockTime.Milliseconds()).
			Streams().Key(r.stream).Id(r.offset).Build()
		res, err := a.client.Do(ctx, cmd).AsXRead()
		if ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing) {
			return
		}
		if err != nil && !rueidis.IsRedisNil(err) { // nil: the block time passed with nothing new
			if downSince.IsZero() {
				downSince = time.Now()
				a.log.Warn("stream read failed; reading again from the last entry read", "stream", r.stream, "err", err)
			}
			recheck = true
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		entries := res[r.stream]
		if !downSince.IsZero() {
			a.log.Info("stream read again", "stream", r.stream, "down", time.Since(downSince).Round(time.Millisecond))
			downSince = time.Time{}
		}
		if len(entries) == r.p.readCount {
			r.checkGap(ctx) // behind: the entries after offset may be trimmed before they are read
		}
		for _, e := range entries {
			if !r.handle(e) {
				return
			}
			r.offset = e.ID
		}
	}
}

// checkGap counts and logs entries trimmed (or deleted) after the last
// entry read: broadcasts this node will never deliver. It logs a stream
// that ends before the last entry read (a failover lost the tail the
// replica had not received). It reports whether it could look at the
// stream.
func (r *streamReader) checkGap(ctx context.Context) bool {
	// A few tries: the first command after an outage may go out on a
	// pipelined connection Redis closed meanwhile (see refreshConnections).
	var info streamState
	var err error
	for range 3 {
		if info, err = r.a.streamInfo(ctx, r.stream); err == nil {
			break
		}
	}
	if err != nil {
		r.a.log.Debug("stream gap not checked", "stream", r.stream, "err", err)
		return false
	}
	if idLess(info.last, r.offset) {
		// Reading goes on after the last entry read: new entries get ids
		// from the new master's clock, past it unless the clocks differ by
		// more than the failover took.
		r.a.log.Warn("the stream ends before the last entry this node read: a failover lost its tail, or it was recreated",
			"stream", r.stream, "last_read", r.offset, "stream_end", info.last)
		return true
	}
	if info.gapAfter(r.offset) {
		r.a.stats.streamGaps.Add(1)
		r.a.log.Error("stream entries were trimmed before this node read them: broadcasts lost (raise Streams.MaxLen?)",
			"stream", r.stream, "last_read", r.offset, "first_held", info.first)
	}
	return true
}

// idLess compares two stream ids "<ms>-<seq>"; an id that does not parse
// is never less.
func idLess(x, y string) bool {
	xm, xs, ok1 := parseID(x)
	ym, ys, ok2 := parseID(y)
	if !ok1 || !ok2 {
		return false
	}
	return xm < ym || xm == ym && xs < ys
}

func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	if !found {
		return ms, 0, err1 == nil
	}
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// handle routes one entry; false once the adapter is closing.
func (r *streamReader) handle(e rueidis.XRangeEntry) bool {
	a := r.a
	a.stats.received.Add(1)
	size := 0
	for k, v := range e.FieldValues {
		size += len(k) + len(v)
	}
	if size > a.opts.MaxMessageSize {
		a.stats.malformed.Add(1)
		return true
	}
	if e.FieldValues["uid"] == a.uid {
		return true // this node applied it before publishing
	}
	ns, ok := a.namespaces[e.FieldValues["nsp"]]
	if !ok {
		return true // another namespace sharing the stream
	}
	if r.duplicate(e) {
		a.stats.streamDuplicates.Add(1)
		return true
	}
	m := rueidis.PubSubMessage{Channel: r.stream}
	entry, err := decodeStreamEntry(e.FieldValues)
	if err != nil {
		a.dropped(m, err)
		return true
	}
	m.Message = entry.msg
	q := a.broadcasts
	switch entry.typ {
	case shardedBroadcast:
	case shardedSocketsJoin, shardedSocketsLeave, shardedDisconnectSockets:
		q = a.requests
	case 1, 2, 13: // heartbeats and adapter close: Node's streams adapter has no use for them
		return true
	default:
		a.dropped(m, malformed("stream entry of type %d", entry.typ))
		return true
	}
	// Waits for room: the stream keeps what is not read yet, so a full
	// queue slows the reader instead of dropping.
	select {
	case q <- inbound{PubSubMessage: m, ns: ns}:
		return true
	case <-a.closing:
		return false
	}
}

package redisadapter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/redistest"
)

const streamsCapture = "node-redis-streams-adapter-0.3.1-capture.txt"

// xadd is one XADD of a MONITOR capture: its arguments after the key.
type xadd struct {
	args   []string // MAXLEN ~ 10000 * field value ...
	fields map[string]string
	order  []string
}

// readXadds returns the XADDs of the streams capture, on stream "socket.io".
func readXadds(t testing.TB) []xadd {
	t.Helper()
	var out []xadd
	for _, args := range monitorCommands(t, streamsCapture) {
		if len(args) < 2 || args[0] != "XADD" {
			continue
		}
		require.Equal(t, "socket.io", args[1])
		x := xadd{args: args[2:], fields: map[string]string{}}
		for i := 6; i+1 < len(args); i += 2 {
			x.fields[args[i]] = args[i+1]
			x.order = append(x.order, args[i])
		}
		out = append(out, x)
	}
	require.NotEmpty(t, out)
	return out
}

func TestStreamsCaptureDecodes(t *testing.T) {
	p := configured(t, Streams{Connector: Standalone{}}).protocol("socket.io", "u").namespace("/")
	var broadcasts, requests int
	for _, x := range readXadds(t) {
		require.Equal(t, []string{"MAXLEN", "~", "10000", "*"}, x.args[:4])
		require.Equal(t, []string{"uid", "nsp", "type", "data"}, x.order)
		e, err := decodeStreamEntry(x.fields)
		require.NoError(t, err, "%v", x.fields)
		if e.typ == shardedBroadcast {
			f, req, err := p.decodeBroadcast(e.msg)
			require.NoError(t, err, e.msg)
			require.Nil(t, req)
			require.Equal(t, "273da6c12108cf63", f.uid)
			require.Equal(t, []string{"comment", "multi", "all", "bin"}[broadcasts], f.event)
			_, err = f.arguments()
			require.NoError(t, err)
			broadcasts++
			continue
		}
		require.NotNil(t, e.req)
		require.Equal(t, "273da6c12108cf63", e.req.uid)
		require.Contains(t, []requestType{typeRemoteJoin, typeRemoteLeave, typeRemoteDisconnect}, e.req.typ)
		requests++
	}
	require.Equal(t, 4, broadcasts) // the last one holds a Buffer: base64 msgpack
	require.Equal(t, 3, requests)

	// The pub/sub side: msgpack requests on the public channel, answers on
	// the requester's.
	var ephemeral, answers int
	for _, m := range readCapture(t, streamsCapture) {
		if m.channel == "socket.io#/#" {
			r, err := p.decodeRequest(m.message)
			require.NoError(t, err, "%q", m.message)
			require.Contains(t, []requestType{typeRemoteFetch, typeServerSideEmit, typeBroadcast}, r.typ)
			ephemeral++
			continue
		}
		r, err := p.decodeAnswer(m.message)
		require.NoError(t, err, "%q", m.message)
		require.NotEmpty(t, r.id)
		answers++
	}
	require.Equal(t, 4, ephemeral)
	require.Equal(t, 4, answers)
}

// Our entries and messages are byte for byte what Node writes for the
// same operation.
func TestStreamsEncodeMatchesNode(t *testing.T) {
	const uid = "273da6c12108cf63"
	p := configured(t, Streams{Connector: Standalone{}}).protocol("socket.io", uid).namespace("/")
	xs := readXadds(t)
	type comment struct {
		Text string `json:"text"`
		N    int    `json:"n"`
	}
	// A durable message's XADD goes to a real Redis, which reads its fields
	// back: they must be Node's, plus our seq.
	srv := redistest.Start(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	defer client.Close()
	ctx := context.Background()
	check := func(i int) func(message, error) {
		return func(m message, err error) {
			t.Helper()
			require.NoError(t, err)
			require.True(t, m.durable)
			require.Equal(t, "socket.io", m.channel, "the stream")
			cmd := p.command(client.B(), m, seqNo{"prod", 9})
			require.Equal(t, xs[i].args[:4], cmd.Commands()[2:6], "MAXLEN ~ 10000 *")
			id, err := client.Do(ctx, p.command(client.B(), m, seqNo{"prod", uint64(i)})).ToString()
			require.NoError(t, err)
			got, err := client.Do(ctx, client.B().Xrange().Key("socket.io").Start(id).End(id).Build()).AsXRange()
			require.NoError(t, err)
			require.Len(t, got, 1)
			want := maps.Clone(xs[i].fields)
			want["seq"] = "prod:" + strconv.Itoa(i)
			require.Equal(t, want, got[0].FieldValues)
		}
	}
	check(0)(p.encodeBroadcast(selector{Rooms: []string{"post:1"}}, "comment", []any{comment{"hello", 1}}))
	check(1)(p.encodeBroadcast(selector{Rooms: []string{"post:1", "post:2"}, Except: []string{"post:3"}}, "multi", []any{42}))
	check(2)(p.encodeBroadcast(selector{}, "all", []any{"x"}))
	check(3)(p.encodeBroadcast(selector{Rooms: []string{"post:1"}}, "bin", []any{[]byte{1, 2, 3}}))
	sel := selector{Rooms: []string{"post:1"}}
	check(4)(p.encodeRequest(request{uid: uid, typ: typeRemoteJoin, sel: sel, rooms: []string{"extra"}}))
	check(6)(p.encodeRequest(request{uid: uid, typ: typeRemoteDisconnect, sel: sel, close: true}))

	// Ephemeral: the fetch request and the answers, msgpack in Node's key order.
	pub := map[string][]string{}
	for _, m := range readCapture(t, streamsCapture) {
		pub[m.channel] = append(pub[m.channel], m.message)
	}
	m, err := p.encodeRequest(request{uid: uid, id: "09d5080863c3dda3", typ: typeRemoteFetch, sel: sel})
	require.NoError(t, err)
	require.False(t, m.durable)
	require.Equal(t, "socket.io#/#", m.channel)
	require.Equal(t, pub["socket.io#/#"][0], string(m.payload))
	answering := configured(t, Streams{Connector: Standalone{}}).protocol("socket.io", "81d2cca0527f378e").namespace("/")
	m, err = answering.encodeAnswer(request{uid: uid, id: "a743592b57accc71", typ: typeBroadcast}, answer{typ: typeBroadcastClientCount, clientCount: 1})
	require.NoError(t, err)
	require.Equal(t, "socket.io#/#"+uid+"#", m.channel)
	require.Equal(t, pub[m.channel][2], string(m.payload))
}

func TestHashCodeStreamNames(t *testing.T) {
	// Node's hashCode (util.js) and % 3, computed with node: "/" 47 2,
	// "/chat" 46457863 1, "/admin-namespace" -1677369266 -2, "/ü😀" 3415248 0.
	p := streams{name: "socket.io", count: 3}
	for nsp, want := range map[string]struct {
		hash   int32
		stream string
	}{
		"/":                {47, "socket.io-2"},
		"/chat":            {46457863, "socket.io-1"},
		"/admin-namespace": {-1677369266, "socket.io--2"},
		"/ü😀":              {3415248, "socket.io-0"},
	} {
		require.Equal(t, want.hash, hashCode(nsp), nsp)
		require.Equal(t, want.stream, streamName(p.name, p.count, nsp), nsp)
	}
	require.Equal(t, "socket.io", streamName("socket.io", 1, "/chat"))
}

func FuzzDecodeStreamEntry(f *testing.F) {
	for _, x := range readXadds(f) {
		f.Add(x.fields["uid"], x.fields["nsp"], x.fields["type"], x.fields["data"])
	}
	f.Add("u", "/", "3", base64.StdEncoding.EncodeToString([]byte{0x93}))
	f.Add("u", "/", "3", `{"packet":{"type":2,"data":["e",1,{"b":[2.5,null],"a":"x"}]},"opts":{"rooms":["r"],"except":[],"flags":{}},"requestId":"q"}`)
	f.Add("u", "/", "3", `{"packet":{"type":2,"data":["e"]}} {}`)
	f.Add("u", "/", "4", `{"opts":{"rooms":["r"],"except":["x"]},"rooms":["a"]}`)
	f.Add("u", "/", "3", "gqZwYWNrZXSCpHR5cGUCpGRhdGGSoWXEAQGkb3B0c8A=")     // msgpack, opts nil
	f.Add("u", "/", "3", "gaZwYWNrZXSDpHR5cGUCo25zcAWkZGF0YZKhZcQBAQ==")     // msgpack, the packet's nsp a number
	f.Add("u", "/", "3", "gaZwYWNrZXSCpHR5cGXLQAAAAAAAAACkZGF0YZKhZcQBAQ==") // msgpack, the packet's type 2.0
	f.Fuzz(func(t *testing.T, uid, nsp, typ, data string) {
		fields := map[string]string{"uid": uid, "nsp": nsp, "type": typ, "data": data}
		e, err := decodeStreamEntry(fields)
		if err != nil || e.skip {
			return // a skipped entry (a heartbeat, an adapter close) carries no message
		}
		p := streams{key: "socket.io", uid: "u"}.namespace(nsp)
		f, req, err := p.decodeBroadcast(e.msg)
		if err == nil {
			_, _ = f.arguments()
		}
		// What the ClusterAdapter message rebuilt as JSON decodes to (how
		// entries were read before), the new decoding must give too, when
		// the data is one JSON value or base64 (JSON text cannot hold a
		// uid or nsp that is not UTF-8: it came out changed).
		envelope, ok := entryAsJSON(fields)
		if !ok || !utf8.ValidString(uid) || !utf8.ValidString(nsp) || len(uid) > maxEntryUID {
			return
		}
		sh := newShardedNamespace("socket.io", "u", nsp)
		if e.typ != shardedBroadcast {
			want, wantErr := sh.decodeRequest(envelope)
			if wantErr == nil && (data == "" || data[0] == '{') {
				require.NotNil(t, e.req)
				require.Equal(t, want, *e.req)
			}
			return
		}
		wantF, wantReq, wantErr := sh.decodeBroadcast(envelope)
		if wantErr != nil {
			return // the new decoding may take what JSON could not hold (NaN), or nest deeper
		}
		if wantReq != nil {
			wantF = wantReq.frame
		}
		require.NoError(t, err, "%q", data)
		require.Equal(t, wantReq != nil, req != nil)
		if req != nil {
			require.Equal(t, wantReq.id, req.id)
			require.Equal(t, wantReq.uid, req.uid)
			f = req.frame
		}
		require.Equal(t, wantF.uid, f.uid)
		require.Equal(t, wantF.nsp, f.nsp)
		// As JSON, which is how a client gets them: JSON text held invalid
		// UTF-8 in names as U+FFFD, the new decoding keeps the bytes.
		asJSON := func(v any) (out any) {
			b, _ := json.Marshal(v)
			_ = json.Unmarshal(b, &out)
			return out
		}
		require.Equal(t, asJSON(wantF.event), asJSON(f.event))
		require.Equal(t, asJSON(wantF.sel.wire()), asJSON(f.sel.wire()))
		wantArgs, _ := json.Marshal(wantF.args)
		args, err := f.arguments()
		require.NoError(t, err)
		gotArgs, err := json.Marshal(args)
		require.NoError(t, err)
		require.Equal(t, asJSON(json.RawMessage(wantArgs)), asJSON(json.RawMessage(gotArgs)))
	})
}

// unlikeJSON reports whether msgpack data (v, decoded) holds what its
// JSON rebuild read otherwise than Node reads the msgpack: a key of the
// data, its packet or its opts that matches a field's name only as
// encoding/json matches them, ignoring case; or binary (base64 text in
// JSON) where Node expects a string: the requestId, a room, the event.
func unlikeJSON(v any, depth int) bool {
	m, ok := v.(map[string]any)
	if !ok || depth > 1 {
		return false
	}
	for k, e := range m {
		for _, name := range []string{"packet", "opts", "requestId", "type", "data", "rooms", "except"} {
			if k != name && strings.EqualFold(k, name) {
				return true
			}
		}
		var strs []any
		switch x := e.(type) {
		case []any:
			strs = x
			if k == "data" && len(x) > 0 {
				strs = x[:1] // the event
			}
		default:
			strs = []any{x}
		}
		if k == "requestId" || k == "rooms" || k == "except" || k == "data" {
			for _, s := range strs {
				if _, bin := s.([]byte); bin {
					return true
				}
			}
		}
		if unlikeJSON(e, depth+1) {
			return true
		}
	}
	return false
}

// entryAsJSON is the ClusterAdapter message a stream entry stands for, as
// JSON, built as the reader built it before it decoded entries directly;
// false when the data is neither one JSON value nor base64 msgpack.
func entryAsJSON(fields map[string]string) (string, bool) {
	data := "null"
	switch d := fields["data"]; {
	case d == "":
	case d[0] == '{':
		if !json.Valid([]byte(d)) {
			return "", false
		}
		data = d
	default:
		b, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return "", false
		}
		dec := newDecoder(string(b))
		v, err := dec.value(0)
		_, peekErr := dec.PeekCode()
		dec.release()
		if err != nil || peekErr == nil || unlikeJSON(v, 0) {
			return "", false
		}
		if b, err = json.Marshal(v); err != nil {
			return "", false
		}
		data = string(b)
	}
	uid, _ := json.Marshal(fields["uid"])
	nsp, _ := json.Marshal(fields["nsp"])
	return `{"type":` + fields["type"] + `,"uid":` + string(uid) + `,"nsp":` + string(nsp) + `,"data":` + data + `}`, true
}

// A reader drops exactly the second copies of a producer's entries: a
// number it read before, within seqWindow of the highest.
func TestStreamReaderDropsSecondCopies(t *testing.T) {
	r := &streamReader{}
	entry := func(ms int, seq string) rueidis.XRangeEntry {
		return rueidis.XRangeEntry{ID: strconv.Itoa(ms) + "-0", FieldValues: map[string]string{"seq": seq}}
	}
	far := strconv.Itoa(6 + seqWindow)
	for _, c := range []struct {
		seq  string
		want bool
	}{
		{"p:1", false}, {"p:2", false}, {"p:3", false},
		{"p:2", true},                  // resent after it went through
		{"q:2", false},                 // another producer
		{"p:6", false}, {"p:5", false}, // a resent entry after a later one: late, not a copy
		{"p:5", true}, {"p:4", false}, {"p:6", true},
		{"p:" + far, false}, {"p:" + far, true}, // a jump past the window starts afresh
		{"p:4", false}, {"p:4", true}, // so does a number far below: it is no resend
		{"p:5", false},
		{"", false}, {"p:x", false}, {"nocolon", false}, // no number: Node's, or not ours
		{strings.Repeat("x", maxProducerName+1) + ":1", false}, // not one of ours: never remembered
		{strings.Repeat("x", maxProducerName+1) + ":1", false},
	} {
		require.Equal(t, c.want, r.duplicate(entry(1000, c.seq)), "seq %q", c.seq)
	}

	// A forged high number does not silence the producer.
	require.False(t, r.duplicate(entry(1000, "q:18446744073709551615")))
	require.False(t, r.duplicate(entry(1000, "q:3")))
	require.True(t, r.duplicate(entry(1000, "q:3")))

	// At most maxProducers are remembered; the one heard of least recently
	// is forgotten first.
	for i := range maxProducers {
		r.duplicate(entry(2000+i, "x"+strconv.Itoa(i)+":1"))
	}
	require.Len(t, r.produced, maxProducers)
	require.NotContains(t, r.produced, "p")
	require.Contains(t, r.produced, "x0")
	r.duplicate(entry(9000, "new:1"))
	require.Len(t, r.produced, maxProducers)
	require.NotContains(t, r.produced, "x0")
}

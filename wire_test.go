package redisadapter

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// published is one PUBLISH of a redis-cli MONITOR capture.
type published struct{ channel, message string }

// readCapture returns the PUBLISH and SPUBLISH commands of a MONITOR capture in testdata
// (captured live from Node's @socket.io/redis-adapter 8.3.0).
func readCapture(t testing.TB, name string) []published {
	t.Helper()
	var out []published
	for _, args := range monitorCommands(t, name) {
		if len(args) == 3 && (strings.EqualFold(args[0], "PUBLISH") || strings.EqualFold(args[0], "SPUBLISH")) {
			out = append(out, published{args[1], args[2]})
		}
	}
	require.NotEmpty(t, out)
	return out
}

// monitorCommands returns the arguments of every command of a MONITOR
// capture in testdata.
func monitorCommands(t testing.TB, name string) [][]string {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	require.NoError(t, err)
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, monitorArgs(sc.Text()))
	}
	return out
}

// monitorArgs splits the quoted arguments of a MONITOR line, undoing its
// escapes (\xNN, \", \\, \n, \r, \t, \a, \b).
func monitorArgs(line string) []string {
	var args []string
	for i := 0; i < len(line); i++ {
		if line[i] != '"' {
			continue
		}
		var b strings.Builder
		for i++; i < len(line) && line[i] != '"'; i++ {
			if line[i] != '\\' || i+1 >= len(line) {
				b.WriteByte(line[i])
				continue
			}
			i++
			switch line[i] {
			case 'x':
				n, _ := strconv.ParseUint(line[i+1:i+3], 16, 8)
				b.WriteByte(byte(n))
				i += 2
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a': // MONITOR writes bytes 7 and 8 so
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			default:
				b.WriteByte(line[i])
			}
		}
		args = append(args, b.String())
	}
	return args
}

func TestDecodeNodeCapture(t *testing.T) {
	ch := newChannels("socket.io", "/")
	var broadcasts, requests, responses int
	for _, p := range readCapture(t, "node-redis-adapter-8.3.0-capture.txt") {
		switch {
		case strings.HasPrefix(p.channel, ch.broadcast):
			f, err := decodeClassicBroadcast(p.message)
			require.NoError(t, err, "%q", p.message)
			require.Equal(t, "sTV2Gd", f.uid)
			require.Equal(t, "/", f.nsp)
			args, err := f.arguments()
			require.NoError(t, err)
			require.Len(t, args, f.argc)
			room, ok := ch.roomOf(p.channel)
			require.True(t, ok)
			if room != "" {
				require.Equal(t, []string{room}, f.sel.Rooms)
			}
			broadcasts++
		case p.channel == ch.request:
			r, err := decodeClassicRequest(p.message)
			require.NoError(t, err, "%q", p.message)
			require.Equal(t, "sTV2Gd", r.uid)
			requests++
		case strings.HasPrefix(p.channel, ch.response):
			r, err := decodeClassicAnswer(p.message)
			require.NoError(t, err, "%q", p.message)
			require.NotEmpty(t, r.id)
			responses++
		}
	}
	require.Equal(t, 3, broadcasts)
	require.Positive(t, requests)
	require.Positive(t, responses)
}

// Our frames are byte for byte what Node publishes for the same emit.
func TestEncodeMatchesNode(t *testing.T) {
	byChannel := map[string][]string{}
	for _, p := range readCapture(t, "node-redis-adapter-8.3.0-capture.txt") {
		byChannel[p.channel] = append(byChannel[p.channel], p.message)
	}
	type comment struct {
		Text string `json:"text"`
		N    int    `json:"n"`
	}
	got, err := encodeClassicBroadcast("sTV2Gd", "/", selector{Rooms: []string{"post:1"}}, "comment", []any{comment{"hello", 1}})
	require.NoError(t, err)
	require.Equal(t, byChannel["socket.io#/#post:1#"][0], string(got))

	got, err = encodeClassicBroadcast("sTV2Gd", "/", selector{Rooms: []string{"post:1", "post:2"}, Except: []string{"post:3"}}, "multi", []any{42})
	require.NoError(t, err)
	require.Equal(t, byChannel["socket.io#/#"][0], string(got))

	p := classic{key: "socket.io", uid: "sTV2Gd"}.namespace("/")
	channel, req, err := unpack(p.encodeRequest(request{uid: "sTV2Gd", id: "2DcG3Y", typ: typeRemoteFetch, sel: selector{Rooms: []string{"post:1"}}}))
	require.NoError(t, err)
	require.Equal(t, "socket.io-request#/#", channel)
	require.Equal(t, byChannel[channel][0], string(req))

	_, req, err = unpack(p.encodeRequest(request{uid: "sTV2Gd", typ: typeRemoteDisconnect, sel: selector{Rooms: []string{"nobody"}}}))
	require.NoError(t, err)
	require.Contains(t, byChannel[channel], string(req))
}

func TestChannels(t *testing.T) {
	ch := newChannels("app", "/chat")
	require.Equal(t, "app#/chat#*", ch.pattern())
	require.Equal(t, "app#/chat#r#", ch.room("r"))
	require.Equal(t, "app-request#/chat#", ch.request)
	require.Equal(t, "app-response#/chat#u#", ch.responseTo("u"))
	require.Equal(t, "app#/chat#u#", ch.node("u"))
	p := classic{key: "app", uid: "u"}.namespace("/chat")
	for rooms, want := range map[string]string{"": "app#/chat#", "r": "app#/chat#r#", "r,s": "app#/chat#"} {
		var sel selector
		if rooms != "" {
			sel.Rooms = strings.Split(rooms, ",")
		}
		channel, _, err := unpack(p.encodeBroadcast(sel, "e", nil))
		require.NoError(t, err)
		require.Equal(t, want, channel, rooms)
	}
	require.Equal(t, "app-request#/chat#", ch.request)
	require.Equal(t, "app-response#/chat#u1#", ch.responseTo("u1"))
	for channel, want := range map[string]string{"app#/chat#": "", "app#/chat#r#": "r", "app#/chat#a#b#": "a#b"} {
		room, ok := ch.roomOf(channel)
		require.True(t, ok, channel)
		require.Equal(t, want, room)
	}
	for _, bad := range []string{"app#/chat#r", "app#/other#", "x"} {
		_, ok := ch.roomOf(bad)
		require.False(t, ok, bad)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, msg := range map[string]string{
		"empty":         "",
		"not msgpack":   "garbage",
		"short array":   "\x92\xa1a\x80",
		"truncated":     "\x93\xa6sTV2Gd\x83\xa4type\x02",
		"no data":       "\x93\xa1u\x81\xa4type\x02\x80",
		"event not str": "\x93\xa1u\x82\xa4type\x02\xa4data\x91\x01\x80",
		"packet type 0": "\x93\xa1u\x82\xa4type\x00\xa4data\x91\xa1e\x80",
		"trailing":      "\x93\xa1u\x82\xa4type\x02\xa4data\x91\xa1e\x80\x00",
		"huge array":    "\x93\xa1u\x82\xa4type\x02\xa4data\xdd\xff\xff\xff\xff",
	} {
		_, err := decodeClassicBroadcast(msg)
		require.ErrorIs(t, err, errMalformed, name)
	}
	for _, msg := range []string{"{", "\x81\xa4type", "\xc1"} {
		_, err := decodeClassicRequest(msg)
		require.Error(t, err, "%q", msg)
		_, err = decodeClassicAnswer(msg)
		require.Error(t, err, "%q", msg)
	}
}

// The decoders never panic and never allocate without bound; seeded with
// Node's frames and ours.
func FuzzDecodeBroadcast(f *testing.F) {
	for _, p := range readCapture(f, "node-redis-adapter-8.3.0-capture.txt") {
		f.Add(p.message)
	}
	ours, _ := encodeClassicBroadcast("u", "/", selector{Rooms: []string{"a", "b"}, Except: []string{"c"}}, "e", []any{1, "x", map[string]any{"k": []int{1}}, nil})
	f.Add(string(ours))
	f.Fuzz(func(t *testing.T, msg string) {
		fr, err := decodeClassicBroadcast(msg)
		if err != nil {
			return
		}
		// Arguments are only checked for shape until a socket wants them.
		args, err := fr.arguments()
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same broadcast.
		again, err := encodeClassicBroadcast(fr.uid, fr.nsp, fr.sel, fr.event, args)
		if err != nil {
			t.Fatalf("re-encode %q: %v", msg, err)
		}
		fr2, err := decodeClassicBroadcast(string(again))
		if err != nil {
			t.Fatalf("decode re-encoded %q: %v", again, err)
		}
		args2, err := fr2.arguments()
		if err != nil {
			t.Fatalf("arguments of re-encoded %q: %v", again, err)
		}
		if fr2.uid != fr.uid || fr2.nsp != fr.nsp || fr2.event != fr.event || len(args2) != len(args) ||
			strings.Join(fr2.sel.Rooms, "\x00") != strings.Join(fr.sel.Rooms, "\x00") ||
			strings.Join(fr2.sel.Except, "\x00") != strings.Join(fr.sel.Except, "\x00") {
			t.Fatalf("round trip changed %q", msg)
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	for _, p := range readCapture(f, "node-redis-adapter-8.3.0-capture.txt") {
		f.Add(p.message)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		_, _ = decodeClassicRequest(msg)
		_, _ = decodeClassicAnswer(msg)
	})
}

func FuzzDecodeSharded(f *testing.F) {
	for _, p := range readCapture(f, "node-redis-sharded-adapter-8.3.0-capture.txt") {
		f.Add(p.message)
	}
	_, ours, _ := unpack(sharded{"socket.io", "u"}.namespace("/").encodeBroadcast(selector{Rooms: []string{"a"}}, "e", []any{1, "x", nil}))
	f.Add(string(ours))
	f.Fuzz(func(t *testing.T, msg string) {
		p := sharded{"socket.io", "u"}.namespace("/")
		if fr, req, err := p.decodeBroadcast(msg); err == nil && req == nil {
			// What decodes re-encodes, and decodes to the same broadcast.
			_, again, err := unpack(sharded{"socket.io", fr.uid}.namespace(fr.nsp).encodeBroadcast(fr.sel, fr.event, fr.args))
			if err != nil {
				t.Fatalf("re-encode %q: %v", msg, err)
			}
			fr2, _, err := p.decodeBroadcast(string(again))
			if err != nil || fr2.event != fr.event || len(fr2.args) != len(fr.args) || fr2.uid != fr.uid {
				t.Fatalf("round trip changed %q: %v", msg, err)
			}
		}
		_, _ = p.decodeRequest(msg)
		_, _ = p.decodeAnswer(msg)
	})
}

func TestDecodeNodeShardedCapture(t *testing.T) {
	p := sharded{"socket.io", "u"}.namespace("/")
	var broadcasts, requests, responses int
	for _, m := range readCapture(t, "node-redis-sharded-adapter-8.3.0-capture.txt") {
		f, req, err := p.decodeBroadcast(m.message)
		switch {
		case err == nil && req == nil:
			require.Equal(t, "/", f.nsp)
			require.NotEmpty(t, f.event)
			broadcasts++
		case err == nil && req.typ >= 0:
			requests++
		default:
			_, err := p.decodeAnswer(m.message)
			require.NoError(t, err, "%q", m.message)
			responses++
		}
	}
	require.Equal(t, 3, broadcasts)
	require.Positive(t, requests)
	require.Positive(t, responses)
}

// broadcastDataJSON (and packetJSON) write by hand what json.Marshal
// writes for a broadcast's data, byte for byte: what Node's peers and the
// captures checked before.
func TestBroadcastDataJSONIsMarshals(t *testing.T) {
	type comment struct {
		Text string `json:"text"`
		N    int    `json:"n"`
	}
	for _, c := range []struct {
		sel  selector
		args []any
	}{
		{selector{}, nil},
		{selector{Rooms: []string{"post:1"}}, []any{comment{"<b>&é\u2028\"", 1}}},
		{selector{Rooms: []string{"a", "b"}, Except: []string{"<c>"}}, []any{42, nil, map[string]any{"z": 1, "a": []int{2}}, json.RawMessage(` { "k" : 1 } `)}},
		{selector{Rooms: []string{}, Except: nil}, []any{"x", 1.5, true}},
	} {
		data, err := json.Marshal(append([]any{"ev<>"}, c.args...))
		require.NoError(t, err)
		packet, err := json.Marshal(struct {
			Type int             `json:"type"`
			Data json.RawMessage `json:"data"`
		}{packetEvent, data})
		require.NoError(t, err)
		want, err := json.Marshal(shardedData{Packet: packet, Opts: toShardedOpts(c.sel)})
		require.NoError(t, err)
		got, err := broadcastDataJSON(c.sel, "ev<>", c.args)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	_, err := broadcastDataJSON(selector{}, "e", []any{make(chan int)})
	require.Error(t, err)
}

func TestFromNode(t *testing.T) {
	for _, uid := range []string{"abc123", "emitter", strings.Repeat("u", 31), strings.Repeat("u", 40)} {
		p := classic{key: "socket.io", uid: uid}.namespace("/")
		_, frame, err := unpack(p.encodeBroadcast(selector{Rooms: []string{"r"}}, "m", []any{1}))
		require.NoError(t, err)
		f, _, err := p.decodeBroadcast(string(frame))
		require.NoError(t, err)
		require.Equal(t, uid, f.uid)
		// Longer uids are not fixstrs: they are decoded instead.
		require.Equal(t, len(uid) < 32, p.fromNode(string(frame)), uid)
		require.False(t, classic{key: "socket.io", uid: "abc124"}.namespace("/").fromNode(string(frame)), uid)
		require.False(t, p.fromNode(string(frame[:len(uid)])), "truncated")
	}
}

// skip must pass over exactly what value decodes, without decoding it.
func FuzzSkip(f *testing.F) {
	for _, p := range readCapture(f, "node-redis-adapter-8.3.0-capture.txt") {
		f.Add(p.message)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		full, skipped := newDecoder(msg), newDecoder(msg)
		_, err := full.value(0)
		skipErr := skipped.skip(0)
		if err == nil && (skipErr != nil || full.offset() != skipped.offset()) {
			t.Fatalf("%q: value read %d bytes, skip %d (%v)", msg, full.offset(), skipped.offset(), skipErr)
		}
	})
}

// A frame that claims a huge string or binary costs no more than its own
// bytes: the fuzzer found that each such claim grew a pooled decoder's
// buffer by a megabyte or more, and the pool kept it.
func TestHugeClaimsAllocateNothing(t *testing.T) {
	claims := []string{
		"\x81\xdb59\xca\xd5",       // a map key (str32) claiming 893 MB
		"\x91\xc6\x7f\xff\xff\xff", // an array of one bin32 claiming 2 GB
		"\x93\xa1u\x83\xa4type\x02\xa4data\x92\xa1e\xdb\x40\x00\x00\x00", // an argument (str32) claiming 1 GB
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 200 {
		for _, msg := range claims {
			dec := newDecoder(msg)
			_, err := dec.value(0)
			dec.release()
			require.Error(t, err)
			if f, err := decodeClassicBroadcast(msg); err == nil {
				_, err = f.arguments()
				require.Error(t, err)
			}
		}
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "600 malformed frames of a few bytes allocated this much")
}

// A broadcast with acknowledgements and its answers, in both protocols:
// what one node encodes, the other decodes (the Node.js peers are in
// TestNodeJSInterop).
func TestBroadcastWithAckRoundTrip(t *testing.T) {
	sel := selector{Rooms: []string{"poll"}, Except: []string{"muted"}}
	out := request{uid: "reqUID", id: "r1", typ: typeBroadcast, ackTimeout: 2500 * time.Millisecond,
		frame: broadcastFrame{nsp: "/chat", event: "question", args: []any{map[string]any{"q": 1}}, sel: sel}}
	for _, protos := range [][2]protocol{
		{classic{key: "socket.io", uid: "reqUID"}, classic{key: "socket.io", uid: "other"}},
		{sharded{"socket.io", "reqUID"}, sharded{"socket.io", "other"}},
	} {
		proto, other := protos[0], protos[1]
		p := proto.namespace("/chat")
		channel, payload, err := unpack(p.encodeRequest(out))
		require.NoError(t, err)
		require.Equal(t, "socket.io", channel[:len("socket.io")])
		if _, ok := proto.(sharded); ok {
			require.Contains(t, string(payload), `"flags":{"timeout":2500}`)
			require.Contains(t, string(payload), `"requestId":"r1"`)
			_, req, err := p.decodeBroadcast(string(payload))
			require.NoError(t, err)
			require.NotNil(t, req, "a receiver routes it to its requests")
		}
		in, err := p.decodeRequest(string(payload))
		require.NoError(t, err)
		require.Equal(t, typeBroadcast, in.typ)
		require.Equal(t, "reqUID", in.uid)
		require.Equal(t, "r1", in.id)
		require.Equal(t, "question", in.frame.event)
		require.Equal(t, sel, in.frame.sel)
		if _, ok := proto.(classic); ok {
			require.Equal(t, "/chat", in.frame.nsp)
		}
		args, err := in.frame.arguments()
		require.NoError(t, err)
		require.Len(t, args, 1)

		_, payload, err = unpack(other.namespace("/chat").encodeAnswer(in, answer{typ: typeBroadcastClientCount, clientCount: 3}))
		require.NoError(t, err)
		r, err := p.decodeAnswer(string(payload))
		require.NoError(t, err)
		require.Equal(t, typeBroadcastClientCount, r.typ)
		require.Equal(t, "r1", r.id)
		require.Equal(t, 3, r.clientCount)

		_, payload, err = unpack(other.namespace("/chat").encodeAnswer(in, answer{typ: typeBroadcastAck, ack: json.RawMessage(`{"a":"yes"}`)}))
		require.NoError(t, err)
		r, err = p.decodeAnswer(string(payload))
		require.NoError(t, err)
		require.Equal(t, typeBroadcastAck, r.typ)
		require.JSONEq(t, `{"a":"yes"}`, string(r.ack))
	}
}

// unpack is an encoder's result as the channel, payload and error.
func unpack(m message, err error) (string, []byte, error) { return m.channel, m.payload, err }

package redisadapter

import (
	"strings"
	"testing"
)

type benchComment struct {
	Post string `json:"post"`
	Text string `json:"text"`
	Node string `json:"node"`
}

// Encode once per broadcast, decode once per node: their cost and
// allocations.
func BenchmarkEncodeBroadcast(b *testing.B) {
	c := benchComment{Post: "42", Text: strings.Repeat("x", 100), Node: "n1"}
	sel := selector{Rooms: []string{"post:42"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeClassicBroadcast("abcdef", "/", sel, "comment", []any{c}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBroadcast(b *testing.B) {
	c := benchComment{Post: "42", Text: strings.Repeat("x", 100), Node: "n1"}
	frame, err := encodeClassicBroadcast("abcdef", "/", selector{Rooms: []string{"post:42"}}, "comment", []any{c})
	if err != nil {
		b.Fatal(err)
	}
	msg := string(frame)
	b.ReportAllocs()
	for b.Loop() {
		// The head, then the arguments, as a node with a target reads it.
		f, err := decodeClassicBroadcast(msg)
		if err == nil {
			_, err = f.arguments()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkShardedEncodeDecode(b *testing.B) {
	c := benchComment{Post: "42", Text: strings.Repeat("x", 100), Node: "n1"}
	p := sharded{"socket.io", "abcdef"}.namespace("/")
	b.ReportAllocs()
	for b.Loop() {
		_, payload, err := unpack(p.encodeBroadcast(selector{Rooms: []string{"post:42"}}, "comment", []any{c}))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := p.decodeBroadcast(string(payload)); err != nil {
			b.Fatal(err)
		}
	}
}

// A streams broadcast entry, from its fields as XREAD returns them to the
// frame and its arguments, as a node with a target reads it.
func BenchmarkDecodeStreamEntry(b *testing.B) {
	c := benchComment{Post: "42", Text: strings.Repeat("x", 100), Node: "n1"}
	p := streams{key: "socket.io", uid: "abcdef"}.namespace("/")
	m, err := p.encodeBroadcast(selector{Rooms: []string{"post:42"}}, "comment", []any{c})
	if err != nil {
		b.Fatal(err)
	}
	fields := map[string]string{"uid": "ghijkl", "nsp": "/", "type": "3", "data": string(m.payload)}
	b.ReportAllocs()
	for b.Loop() {
		e, err := decodeStreamEntry(fields)
		if err == nil {
			var f broadcastFrame
			if f, _, err = p.decodeBroadcast(e.msg); err == nil {
				_, err = f.arguments()
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

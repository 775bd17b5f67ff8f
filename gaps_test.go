package redisadapter

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
)

func TestSentLogCountsTheSpanOnce(t *testing.T) {
	slot := int64(sentSlot)
	base := 100 * slot
	var l sentLog
	require.Zero(t, first(l.take(0, base, base)), "nothing recorded")
	l.record(-1) // before the process started: not counted, no panic
	for _, at := range []int64{base, base + 1, base + slot - 1, base + slot, base + 5*slot, base + 9*slot} {
		l.record(at)
	}
	now := base + 10*slot

	n, partial := l.take(base+slot/2, base+slot+1, now)
	require.Equal(t, uint64(4), n, "whole slots: the span's first and last slots count entire")
	require.False(t, partial)
	require.Zero(t, first(l.take(base, base+slot, now)), "a count taken is forgotten")
	require.Equal(t, uint64(1), first(l.take(base+5*slot, base+5*slot, now)))
	require.Zero(t, first(l.take(base+9*slot, base+2*slot, now)), "an empty span")
	require.Equal(t, uint64(1), first(l.take(-slot, now+slot, now)), "clamped to what is kept")
}

func TestSentLogKeepsAMinute(t *testing.T) {
	slot := int64(sentSlot)
	var l sentLog
	l.record(0)
	l.record(sentSlots * slot) // the same place in the ring: the older count goes
	now := sentSlots*slot + slot
	n, partial := l.take(0, now, now)
	require.Equal(t, uint64(1), n)
	require.True(t, partial, "the span reaches back past the horizon")
}

func first(n uint64, _ bool) uint64 { return n }

func TestGapNoticeRoundTrip(t *testing.T) {
	out := request{uid: "gapUID", typ: typeGap, gapSince: 1234*time.Millisecond + 400*time.Microsecond, gapUntil: 2*time.Millisecond + 700*time.Microsecond}
	for _, proto := range []protocol{classic{key: "socket.io", uid: "gapUID"}, sharded{"socket.io", "gapUID"}} {
		require.True(t, proto.asksFor(typeGap))
		p := proto.namespace("/chat")
		m, err := p.encodeRequest(out)
		require.NoError(t, err)
		require.Equal(t, readersAll, m.readers, "every node's subscriptions read it")
		switch proto.(type) {
		case classic:
			require.Equal(t, "socket.io-request#/chat#", m.channel)
			require.JSONEq(t, `{"uid":"gapUID","type":1000,"data":{"since":1235,"until":2}}`, string(m.payload))
		case sharded:
			require.Equal(t, "socket.io#/chat#", m.channel)
			require.JSONEq(t, `{"uid":"gapUID","nsp":"/chat","type":1000,"data":{"since":1235,"until":2}}`, string(m.payload))
			_, req, err := p.decodeBroadcast(string(m.payload))
			require.NoError(t, err)
			require.NotNil(t, req, "a receiver routes it to its requests")
		}
		in, err := p.decodeRequest(string(m.payload))
		require.NoError(t, err)
		require.Equal(t, typeGap, in.typ)
		require.Equal(t, "gapUID", in.uid)
		require.Equal(t, 1235*time.Millisecond, in.gapSince, "rounded outwards")
		require.Equal(t, 2*time.Millisecond, in.gapUntil, "rounded outwards")
		require.False(t, in.gapRooms)

		rooms := out
		rooms.gapRooms = true
		m, err = p.encodeRequest(rooms)
		require.NoError(t, err)
		require.Contains(t, string(m.payload), `"roomChannels":true`)
		in, err = p.decodeRequest(string(m.payload))
		require.NoError(t, err)
		require.True(t, in.gapRooms, "a room channels' connection's gap")
	}
	require.False(t, streams{}.asksFor(typeGap), "a stream keeps what a reader missed")
}

func TestGapNoticeMalformed(t *testing.T) {
	for _, data := range []string{`{}`, `{"since":5}`, `{"since":5,"until":6}`, `{"since":5,"until":-1}`, `{"since":99999999999,"until":0}`, `"x"`} {
		_, err := decodeClassicRequest(`{"uid":"u","type":1000,"data":` + data + `}`)
		require.True(t, errors.Is(err, errMalformed), "%s: %v", data, err)
		_, err = sharded{"socket.io", "me"}.namespace("/").decodeRequest(`{"uid":"u","nsp":"/","type":1000,"data":` + data + `}`)
		require.True(t, errors.Is(err, errMalformed), "%s: %v", data, err)
	}
	// {"uid": "u", "type": 1000} in msgpack: the classic decoder's other form.
	_, err := decodeClassicRequest("\x82\xa3uid\xa1u\xa4type\xcd\x03\xe8")
	require.True(t, errors.Is(err, errMalformed), "%v", err)
}

func TestGapLogsByReaders(t *testing.T) {
	var g gapLogs
	require.Same(t, &g.all, g.of(readersAll))
	require.Same(t, &g.rooms, g.of(readersRoom))
	require.Nil(t, g.of(readersNone))
	require.Nil(t, (*gapLogs)(nil).of(readersAll), "an Emitter counts nothing")
	for _, c := range []struct {
		proto   protocol
		sel     selector
		readers readers
	}{
		{classic{key: "k", uid: "u"}, selector{}, readersAll},
		{classic{key: "k", uid: "u"}, selector{Rooms: []string{"post:1"}}, readersAll},
		{classic{key: "k", uid: "u", perRoom: true}, selector{Rooms: []string{"post:1"}}, readersRoom},
		{sharded{"k", "u"}, selector{Rooms: []string{"post:1"}}, readersRoom},
		{sharded{"k", "u"}, selector{Rooms: []string{"a", "b"}}, readersAll},
		{streams{}, selector{}, readersNone},
	} {
		m, err := c.proto.namespace("/").encodeBroadcast(c.sel, "ev", nil)
		require.NoError(t, err)
		require.Equal(t, c.readers, m.readers, "%T %v", c.proto, c.sel)
	}
}

// A notice's span, read from its arrival: what was published in it counts
// failed, in the log of its kind, once; what was published outside it,
// more than a slot away, does not.
func TestCountGapCountsTheSpan(t *testing.T) {
	var logs bytes.Buffer
	a := &Adapter{pub: &publisher{}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	ns := newNamespace("/", classic{key: "k", uid: "me"}.namespace("/"))
	// The times below are before the process started until it has run 2 s.
	await.True(t, 5*time.Second, 10*time.Millisecond, "the test process has run for 2 s", func() bool {
		return sinceStart(time.Now()) > int64(2*time.Second)
	})
	now := sinceStart(time.Now())
	arrived := now - int64(time.Second) // waited in the queue since
	for _, ago := range []time.Duration{900 * time.Millisecond, 350 * time.Millisecond, 250 * time.Millisecond, 150 * time.Millisecond, 50 * time.Millisecond} {
		ns.sent.all.record(arrived - int64(ago))
		ns.sent.rooms.record(arrived - int64(ago))
	}
	notice := request{uid: "deaf", typ: typeGap, gapSince: 300 * time.Millisecond, gapUntil: 100 * time.Millisecond}

	a.countGap(ns, notice, arrived)
	require.Equal(t, uint64(2), a.pub.failures.Load(), "the two published 250 and 150 ms before it arrived")
	require.Contains(t, logs.String(), "node=deaf")
	a.countGap(ns, notice, arrived)
	require.Equal(t, uint64(2), a.pub.failures.Load(), "a second notice of the span counts them once")

	notice.gapRooms = true
	a.countGap(ns, notice, arrived)
	require.Equal(t, uint64(4), a.pub.failures.Load(), "the room channels' count apart")
}

// A room channel's gap follows it from shard to shard: one it was given
// and the shard has not taken yet, or Redis's unsubscribe push not yet
// handled, goes back to the manager with it; a second gap given for a
// channel the shard holds merges, keeping the earlier start.
func TestRoomGapFollowsTheChannel(t *testing.T) {
	s := &shard{changed: make(chan struct{}, 1)}
	s.add("x", added{gapFrom: 5}, nil)
	s.add("x", added{lost: true, gapFrom: 3}, nil)
	s.add("x", added{gapFrom: 4}, nil)
	require.Equal(t, added{lost: true, gapFrom: 3}, s.adds["x"])
	_, from := s.remove("x")
	require.EqualValues(t, 3, from)

	s.unsubs = []unsubPush{{"y", 7}, {"x", 2}}
	_, from = s.remove("x")
	require.EqualValues(t, 2, from, "the push it has not handled")
	_, from = s.remove("z")
	require.Zero(t, from)

	require.EqualValues(t, 3, earliest(0, 3))
	require.EqualValues(t, 3, earliest(3, 0))
	require.EqualValues(t, 2, earliest(3, 2))
	require.Zero(t, earliest(0, 0))
}

package redisadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// newEmitter is an Emitter on c with opts (nil: the defaults), closed when
// the test ends. (The one place that names the Emitter's type and Close.)
func newEmitter(t *testing.T, c redisadapter.Connector, opts *redisadapter.Options) redisadapter.Emitter {
	t.Helper()
	e, err := redisadapter.NewEmitter(bg(t), c, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// emitterSuite: an Emitter, which holds no sockets, reaches the sockets
// and the servers of two nodes in one mode (suite runs it in each):
// broadcasts to rooms, with exceptions, and to namespaces; joins, leaves
// and disconnects; server-side events (with sharded pub/sub too, which
// Node's emitter does not do).
func emitterSuite(t *testing.T, e env) {
	a, b := e.nodes(t, &redisadapter.Options{Namespaces: []string{"/", "/admin"}})
	em := newEmitter(t, e.c, e.options(nil))
	ac, bc, vip := a.client(t, "post:1"), b.client(t, "post:1"), b.client(t, "post:1", "vip")
	admin := a.client(t)
	require.NoError(t, admin.Join("/admin"))
	eventually(t, "admin socket connected on a", func() bool {
		n, _ := a.a.Of("/admin").Local().CountSockets(bg(t))
		return n == 1
	})
	e.roomSubscribed(t, "post:1", 2)

	require.NoError(t, em.To("post:1").Except("vip").Emit(bg(t), "comment", map[string]string{"text": "from a worker"}))
	require.NoError(t, em.To("post:1").Emit(bg(t), "after"))
	for _, c := range []*siotest.Client{ac, bc} {
		expect(t, c, "comment", `{"text":"from a worker"}`)
		expect(t, c, "after")
	}
	expect(t, vip, "after") // excluded from the first
	// To whole namespaces (on other channels than the room's: sent after
	// the room's arrived, as the order between channels is not kept).
	require.NoError(t, em.Emit(bg(t), "everyone", 1))
	require.NoError(t, em.Of("/admin").Emit(bg(t), "admins", 2))
	for _, c := range []*siotest.Client{ac, bc, vip} {
		expect(t, c, "everyone", "1")
	}
	// The admin socket is in "/" too: it gets the root broadcast, and its
	// namespace's; the order between namespaces is not kept.
	var got []string
	for range 2 {
		ev, err := admin.NextAny(wait)
		require.NoError(t, err)
		got = append(got, ev.Namespace+" "+ev.Name+" "+string(ev.Args[0]))
	}
	require.ElementsMatch(t, []string{" everyone 1", "/admin admins 2"}, got)

	require.NoError(t, em.To("vip").SocketsJoin(bg(t), "joined"))
	eventually(t, "emitter's join applied", func() bool { return b.srv.RoomLen("/", "joined") == 1 })
	e.roomSubscribed(t, "joined", 1)
	require.NoError(t, em.To("joined").Emit(bg(t), "to-joined"))
	expect(t, vip, "to-joined")
	require.NoError(t, em.To("vip").SocketsLeave(bg(t), "joined"))
	eventually(t, "emitter's leave applied", func() bool { return b.srv.RoomLen("/", "joined") == 0 })

	type call struct {
		node string
		args []json.RawMessage
	}
	calls := make(chan call, 4)
	for name, n := range map[string]*node{"a": a, "b": b} {
		n.a.Of("/admin").OnServerSideEmit("flush", func(args []json.RawMessage) any { calls <- call{name, args}; return nil })
	}
	acks, err := em.Of("/admin").ServerSideEmit(bg(t), "flush", "post:1")
	require.NoError(t, err)
	require.Equal(t, []json.RawMessage{json.RawMessage("null"), json.RawMessage("null")}, acks, "each node's handler answers")
	var handled []string
	for range 2 {
		select {
		case c := <-calls:
			require.Equal(t, []json.RawMessage{json.RawMessage(`"post:1"`)}, c.args)
			handled = append(handled, c.node)
		case <-time.After(wait):
			t.Fatalf("server-side event from the emitter handled by %v only", handled)
		}
	}
	require.ElementsMatch(t, []string{"a", "b"}, handled, "each node's handler, once")

	require.NoError(t, em.To(vip.ID()).DisconnectSockets(bg(t), true))
	select {
	case <-vip.Closed():
	case <-time.After(wait):
		t.Fatal("emitter's disconnect did not close the client")
	}
	require.ErrorIs(t, em.Of("chat").Emit(bg(t), "x"), redisadapter.ErrConfig)
	require.Zero(t, a.a.Stats().Malformed+b.a.Stats().Malformed)
}

// emitterRequestsSuite: an Emitter asks two nodes what a node asks, in
// one mode (suite runs it in each): the server count (which does not count
// the Emitter, subscribed to its answers by then), fetched and counted
// sockets, rooms, server-side events with their acknowledgements and
// broadcasts with the clients' acknowledgements; every server answers, so
// the Emitter waits for all of them, and returns what arrived with
// ErrTimeout when one does not.
func emitterRequestsSuite(t *testing.T, e env) {
	a, b := e.nodes(t, nil)
	em := newEmitter(t, e.c, e.options(nil))
	ac, bc, b2 := a.client(t, "post:1"), b.client(t, "post:1", "extra"), b.client(t)
	// b2 joined no room, which would have acked its OnConnect.
	eventually(t, "b2 tracked", func() bool { return b.a.Stats().Sockets == 2 })
	var bconn socketio.Conn
	b.srv.ForEach("/", bc.ID(), func(c socketio.Conn) { bconn = c })
	require.NoError(t, b.a.SetData(bconn, map[string]string{"user": "ada"}))

	n, err := em.ServerCount(bg(t))
	require.NoError(t, err)
	require.Equal(t, 2, n, "the two nodes")

	sockets, err := em.To("post:1").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, sockets, 2)
	byID := map[string]redisadapter.RemoteSocket{}
	for _, s := range sockets {
		byID[s.ID] = s
	}
	require.Equal(t, a.a.UID(), byID[ac.ID()].Node)
	require.Equal(t, b.a.UID(), byID[bc.ID()].Node)
	require.ElementsMatch(t, []string{bc.ID(), "post:1", "extra"}, byID[bc.ID()].Rooms)
	require.JSONEq(t, `{"user":"ada"}`, string(byID[bc.ID()].Data))
	all, err := em.FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, all, 3)

	requireCounts(t, []countCase{
		{"Room", em.To("post:1"), 2},
		{"Except", em.To("post:1").Except("extra"), 1},
		{"Namespace", em, 3},
		{"Nowhere", em.To("nowhere"), 0},
	})
	rooms, err := em.AllRooms(bg(t))
	require.NoError(t, err)
	require.Subset(t, rooms, []string{"post:1", "extra", ac.ID(), bc.ID(), b2.ID()})
	require.IsIncreasing(t, rooms)

	for name, n := range map[string]*node{"a": a, "b": b} {
		n.a.Of("/").OnServerSideEmit("ping", func(args []json.RawMessage) any { return map[string]any{"node": name, "got": args} })
	}
	acks, err := em.ServerSideEmit(bg(t), "ping", "p", 7)
	require.NoError(t, err)
	require.Len(t, acks, 2)
	var from []string
	for _, ack := range acks {
		var got struct {
			Node string
			Got  []json.RawMessage
		}
		require.NoError(t, json.Unmarshal(ack, &got))
		require.Equal(t, []json.RawMessage{json.RawMessage(`"p"`), json.RawMessage("7")}, got.Got)
		from = append(from, got.Node)
	}
	require.ElementsMatch(t, []string{"a", "b"}, from)

	ackAs(ac, "ac")
	ackAs(bc, "bc")
	ackAs(b2, "b2")
	acks, err = em.To("post:1").Timeout(wait).EmitWithAck(bg(t), "question", 1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"ac", "bc"}, whoAcked(t, acks, "1"))
	acks, err = em.Timeout(wait).EmitWithAck(bg(t), "question", 2)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"ac", "bc", "b2"}, whoAcked(t, acks, "2"))
	acks, err = em.To("nowhere").EmitWithAck(bg(t), "question", 3)
	require.NoError(t, err, "each node reports 0 clients")
	require.Empty(t, acks)

	// Partial results: a node without a handler, a client that does not
	// answer. The timeout names what ran out and who did not answer.
	a.a.Of("/").OnServerSideEmit("only-b", nil)
	b.a.Of("/").OnServerSideEmit("only-b", func([]json.RawMessage) any { return "b" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	acks, err = em.ServerSideEmit(ctx, "only-b")
	require.ErrorIs(t, err, redisadapter.ErrTimeout)
	require.ErrorContains(t, err, "1 of 2 servers answered before the caller's deadline")
	require.Equal(t, []json.RawMessage{json.RawMessage(`"b"`)}, acks)
	b2.AckWith(nil)
	acks, err = em.Timeout(time.Second).EmitWithAck(bg(t), "question", 4)
	require.ErrorIs(t, err, redisadapter.ErrTimeout)
	require.ErrorContains(t, err, "1 of 3 known clients did not answer, and 0 of 2 servers did not report how many they reached, before the timeout 1s passed")
	require.ElementsMatch(t, []string{"ac", "bc"}, whoAcked(t, acks, "4"))
	// Every question reached its clients: three to those in post:1, two to b2.
	for c, n := range map[*siotest.Client]int{ac: 3, bc: 3, b2: 2} {
		for range n {
			_, err := c.Next("question", wait)
			require.NoError(t, err)
		}
	}

	n, err = em.ServerCount(bg(t))
	require.NoError(t, err)
	require.Equal(t, 2, n, "the Emitter's answer subscription is not counted")
	n, err = a.a.Of("/").ServerCount(bg(t))
	require.NoError(t, err)
	require.Equal(t, 2, n, "nor by the nodes")
	_, err = em.Of("chat").FetchSockets(bg(t))
	require.ErrorIs(t, err, redisadapter.ErrConfig)
	require.Zero(t, a.a.Stats().Malformed+b.a.Stats().Malformed)
}

// countCase is a selection (an Emitter, an EmitterOperator, or a node's)
// and how many sockets it must count.
type countCase struct {
	name string
	op   interface {
		CountSockets(context.Context) (int, error)
	}
	want int
}

func requireCounts(t *testing.T, cases []countCase) {
	t.Helper()
	for _, tc := range cases {
		n, err := tc.op.CountSockets(bg(t))
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, n, tc.name)
	}
}

// Node's @socket.io/redis-emitter publishes; a Go node delivers.
func TestNpmEmitterReachesGoNode(t *testing.T) {
	srv := redistest.Start(t)
	g := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	cl := g.client(t, "post:5")
	run := func(cmd map[string]any) {
		b, _ := json.Marshal(cmd)
		p := nodetest.Start(t, "emitter.js", []string{"REDIS_URL=" + srv.URL()}, string(b))
		m := p.Wait(wait, "emitter done", func(m nodetest.Msg) bool { return m["ok"] != nil || m["error"] != nil })
		require.Nil(t, m["error"], "emitter.js: %s", m["error"])
	}
	run(map[string]any{"op": "emit", "rooms": []string{"post:5"}, "event": "from-npm", "args": []any{map[string]any{"n": 1}}})
	run(map[string]any{"op": "emit", "event": "to-all", "args": []any{"x", 2}})
	expect(t, cl, "from-npm", `{"n":1}`)
	expect(t, cl, "to-all", `"x"`, `2`)
	run(map[string]any{"op": "join", "rooms": []string{cl.ID()}, "join": "npm-room"})
	eventually(t, "npm emitter's socketsJoin applied", func() bool { return g.srv.RoomLen("/", "npm-room") == 1 })
	require.Zero(t, g.a.Stats().Malformed)
}

// Our Emitter reaches the clients of a Node.js server running
// @socket.io/redis-adapter.
func TestEmitterReachesNodeJSServer(t *testing.T) {
	srv := redistest.Start(t)
	_, jsURL, _ := startNodeServer(t, "REDIS_URL="+srv.URL())
	jc := nodetest.Dial(t, jsURL, "")
	jc.Call(t, "join", "post:8")
	e := newEmitter(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	require.NoError(t, e.To("post:8").Emit(bg(t), "from-go-emitter", map[string]int{"n": 3}))
	require.JSONEq(t, `[{"n":3}]`, jc.NextNamed(t, "from-go-emitter"))
	require.NoError(t, e.To(jc.ID).DisconnectSockets(bg(t), true))
	ev, _ := jc.Next(t)
	require.Equal(t, "disconnected", ev)
}

func TestEmitterUnreachableRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	e := newEmitter(t, c, nil)
	srv.Stop(t)
	// The first Emit after Redis went away is queued (nothing knew yet);
	// Flush reports that it failed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = e.Emit(ctx, "x")
	err := e.Flush(ctx)
	require.ErrorIs(t, err, redisadapter.ErrPublish)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable, "Redis was not reached")
	// From then on the emitter knows: Emit waits for its own answer and
	// fails, within its context.
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, e.Emit(ctx, "x"), redisadapter.ErrPublish)
	require.Less(t, time.Since(start), 2*time.Second, "Emit returned within its context")

	// A request cannot subscribe to its answers: it fails within its
	// context, naming why.
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	sockets, err := e.FetchSockets(ctx)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable)
	require.ErrorContains(t, err, "subscriptions are down")
	require.ErrorContains(t, err, "connection refused")
	require.Empty(t, sockets)

	_, err = redisadapter.NewEmitter(bg(t), c, nil)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable, "NewEmitter fails fast when Redis is down")

	require.NoError(t, e.Close(bg(t)))
	require.ErrorIs(t, e.To("r").Emit(bg(t), "x"), redisadapter.ErrClosed)
}

// The Emitter subscribes to its answers only when it first asks something
// in a namespace, on its own uid's channel (and, in classic mode, the
// shared one Node.js servers answer on), not on the channel servers are
// counted by; a flood of answers keeps as many as there are servers; Close
// fails what is pending with ErrClosed and releases the subscription.
func TestEmitterAnswerSubscription(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	raw := rawClient(t, c)
	channels := func() []string {
		chs, err := raw.Do(bg(t), raw.B().PubsubChannels().Build()).AsStrSlice()
		require.NoError(t, err)
		return chs
	}
	em, err := redisadapter.NewEmitter(bg(t), c, nil)
	require.NoError(t, err)
	n, err := em.ServerCount(bg(t))
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, em.Emit(bg(t), "x"))
	require.NoError(t, em.Flush(bg(t)))
	require.Empty(t, channels(), "no subscription before the first request")
	// No server: a request needs no answer, and returns at once.
	acks, err := em.ServerSideEmit(bg(t), "nobody")
	require.NoError(t, err)
	require.Empty(t, acks)

	// A spy on the request channel is counted as a server that never answers.
	requests := spyRequests(t, c)
	eventually(t, "spy counted", func() bool { n, _ := em.ServerCount(bg(t)); return n == 1 })

	type result struct {
		acks []json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		acks, err := em.ServerSideEmit(context.Background(), "flood")
		done <- result{acks, err}
	}()
	var req struct {
		UID       string `json:"uid"`
		RequestID string `json:"requestId"`
		Type      int    `json:"type"`
	}
	select {
	case msg := <-requests:
		require.NoError(t, json.Unmarshal([]byte(msg), &req))
	case <-time.After(wait):
		t.Fatal("no request seen")
	}
	require.Equal(t, 6, req.Type)
	require.NotEqual(t, "emitter", req.UID, "requests carry the Emitter's own uid")
	own, shared := defaultNames.responses("/", req.UID), defaultNames.responses("/", "")
	require.ElementsMatch(t, []string{own, shared, defaultNames.requests("/")}, channels())
	for i := range 10000 {
		answer := fmt.Sprintf(`{"type":6,"requestId":%q,"data":%d}`, req.RequestID, i)
		require.NoError(t, raw.Do(bg(t), raw.B().Publish().Channel(own).Message(answer).Build()).Error())
	}
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, []json.RawMessage{json.RawMessage("0")}, r.acks, "one server counted: its first answer kept, the rest ignored")

	// Acks for a broadcast with acknowledgements, with no count reported:
	// kept up to the allowance for acks ahead of their count.
	go func() {
		acks, err := em.Timeout(time.Second).EmitWithAck(context.Background(), "question")
		done <- result{acks, err}
	}()
	var ackReq struct {
		RequestID string `msgpack:"requestId"`
	}
	select {
	case msg := <-requests:
		require.NoError(t, msgpack.Unmarshal([]byte(msg), &ackReq))
	case <-time.After(wait):
		t.Fatal("no request seen")
	}
	// One pipeline: the acks arrive well within the request's second,
	// however slow each round trip on a loaded machine.
	flood := make(rueidis.Commands, 0, 3000)
	for i := range 3000 {
		payload, err := msgpack.Marshal(map[string]any{"type": 9, "requestId": ackReq.RequestID, "packet": i})
		require.NoError(t, err)
		flood = append(flood, raw.B().Publish().Channel(own).Message(string(payload)).Build())
	}
	for _, r := range raw.DoMulti(bg(t), flood...) {
		require.NoError(t, r.Error())
	}
	r = <-done
	require.ErrorIs(t, r.err, redisadapter.ErrTimeout)
	require.ErrorContains(t, r.err, "0 of 0 known clients did not answer, and 1 of 1 servers did not report how many they reached")
	require.Len(t, r.acks, 1024)

	// Close ends a request still waiting, and the subscription.
	go func() {
		sockets, err := em.FetchSockets(context.Background())
		require.Empty(t, sockets)
		done <- result{err: err}
	}()
	<-requests
	require.NoError(t, em.Close(bg(t)))
	select {
	case r := <-done:
		require.ErrorIs(t, r.err, redisadapter.ErrClosed)
	case <-time.After(wait):
		t.Fatal("Close did not end the pending request")
	}
	eventually(t, "the Emitter's subscription released", func() bool {
		return slices.Equal(channels(), []string{defaultNames.requests("/")})
	})
	_, err = em.FetchSockets(bg(t))
	require.ErrorIs(t, err, redisadapter.ErrClosed)
}

// Our Emitter asks a fleet of a Go node and a Node.js server (socket.io
// 4 with @socket.io/redis-adapter 8.3, classic and sharded, or
// @socket.io/redis-streams-adapter 0.3.1) what a node asks: Node's servers
// answer its requests as they answer a node's, on the channels it listens
// to (classic Node.js servers answer on the shared response channel).
func TestEmitterRequestsNodeJSInterop(t *testing.T) {
	t.Run("Classic", func(t *testing.T) {
		srv := redistest.Start(t)
		emitterInterop(t, func(string) redisadapter.Connector { return redisadapter.Standalone{Addr: srv.Addr()} }, "REDIS_URL="+srv.URL())
	})
	t.Run("Streams", func(t *testing.T) {
		srv := redistest.Start(t)
		emitterInterop(t, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{Addr: srv.Addr()}, Name: name}
		}, "REDIS_URL="+srv.URL(), "STREAMS=1")
	})
	set := sharedCluster(t)
	cluster := "REDIS_CLUSTER=" + strings.Join(set.Addrs(), ",")
	t.Run("ClusterSharded", func(t *testing.T) {
		emitterInterop(t, func(string) redisadapter.Connector { return redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true} }, cluster, "SHARDED=1")
	})
	t.Run("StreamsClusterShardedPubSub", func(t *testing.T) {
		emitterInterop(t, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}, Name: name}
		}, cluster, "STREAMS=1", "SHARDED=1")
	})
}

// emitterInterop runs a Go node of connect's connector, a Node.js server
// (env: which adapter, on which Redis) and an Emitter under a key, and
// stream name, of the test's own.
func emitterInterop(t *testing.T, connect func(name string) redisadapter.Connector, env ...string) {
	key := uniqueKey(t)
	g := startNode(t, connect(key), &redisadapter.Options{Key: key})
	js, jsURL, jsUID := startNodeServer(t, append(env, "KEY="+key)...)
	clusterAdapter := slices.Contains(env, "STREAMS=1") || slices.Contains(env, "SHARDED=1")
	em := newEmitter(t, connect(key), &redisadapter.Options{Key: key})

	gc := g.client(t, "post:1")
	jc := dialNode(t, jsURL)
	jc.Call(t, "join", "post:1")
	jc.Call(t, "join", "js-only")

	n, err := em.ServerCount(bg(t))
	require.NoError(t, err)
	require.Equal(t, 2, n)

	sockets, err := em.To("post:1").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, sockets, 2)
	for _, s := range sockets {
		switch s.ID {
		case jc.ID:
			require.ElementsMatch(t, []string{jc.ID, "post:1", "js-only"}, s.Rooms)
			require.Equal(t, "websocket", s.Handshake.Query["transport"])
			if clusterAdapter {
				require.Equal(t, jsUID, s.Node, "ClusterAdapter messages name their sender")
			}
		case gc.ID():
			require.Equal(t, g.a.UID(), s.Node)
		default:
			t.Fatalf("unexpected socket %q", s.ID)
		}
	}
	requireCounts(t, []countCase{
		{"Room", em.To("post:1"), 2},
		{"Except", em.To("post:1").Except("js-only"), 1},
		{"NodeOnly", em.To("js-only"), 1},
		{"Namespace", em, 2},
	})
	rooms, err := em.AllRooms(bg(t))
	require.NoError(t, err)
	require.Subset(t, rooms, []string{"post:1", "js-only", jc.ID, gc.ID()})

	g.a.Of("/").OnServerSideEmit("ping", func(args []json.RawMessage) any {
		return map[string]any{"from": "go", "got": args}
	})
	acks, err := em.ServerSideEmit(bg(t), "ping", "e", 3)
	require.NoError(t, err)
	require.Len(t, acks, 2)
	var from []string
	for _, raw := range acks {
		var a struct {
			From string            `json:"from"`
			Got  []json.RawMessage `json:"got"`
		}
		require.NoError(t, json.Unmarshal(raw, &a), "ack %s", raw)
		require.Equal(t, []json.RawMessage{json.RawMessage(`"e"`), json.RawMessage("3")}, a.Got, "ack %s", raw)
		from = append(from, a.From)
	}
	require.ElementsMatch(t, []string{"go", "node"}, from)
	js.Wait(wait, "ping event on node", func(m nodetest.Msg) bool { return m.Str("event") == "ping" })

	jc.AutoAck(t, true)
	ackAs(gc, "go-client")
	acks, err = em.To("post:1").Timeout(wait).EmitWithAck(bg(t), "poll", map[string]any{"q": 1})
	require.NoError(t, err)
	require.Len(t, acks, 2)
	joined := string(acks[0]) + string(acks[1])
	require.Contains(t, joined, `"who":"go-client"`)
	require.Contains(t, joined, jc.ID)
	acks, err = em.To("js-only").Timeout(wait).EmitWithAck(bg(t), "poll", 2)
	require.NoError(t, err, "the Go node reports 0 clients")
	require.Len(t, acks, 1)
	require.Contains(t, string(acks[0]), jc.ID)
	for range 2 {
		jc.NextNamed(t, "poll")
	}
	_, err = gc.Next("poll", wait)
	require.NoError(t, err)

	require.Zero(t, g.a.Stats().Malformed, "nothing the Emitter sent was dropped")
}

package redisadapter_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(clientsEnv); spec != "" {
		os.Exit(clientsProcess(spec))
	}
	goleak.VerifyTestMain(runThenStopShared{m}, ignoredGoroutines...)
}

// ignoredGoroutines outlive what started them, by design of a dependency:
// no leak of ours.
var ignoredGoroutines = []goleak.Option{
	// testcontainers' Docker client keeps idle HTTP connections and a
	// log producer goroutine per process, not per test.
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("github.com/testcontainers/testcontainers-go.(*Reaper).connect.func1"),
	// rueidis closes the connections a cluster refresh dropped 5 s later,
	// on a goroutine of its own that outlives Close.
	goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
	// A MOVED answer schedules a refresh about a second later on a
	// goroutine that outlives Close too (slot migration tests).
	goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
}

// runThenStopShared runs the tests, then stops the shared topologies, before
// goleak looks for what is left.
type runThenStopShared struct{ m *testing.M }

func (r runThenStopShared) Run() int {
	defer stopShared()
	return r.m.Run()
}

// suite is the behaviour every mode must have; each mode runs it with its
// features, and connect returns its connector for one test (name is the
// test's own stream name, for a streams mode). Each test runs under a key
// of its own (env).
func suite(t *testing.T, f features, connect func(name string) redisadapter.Connector) {
	t.Run("EmitWithAck", func(t *testing.T) { emitWithAckSuite(t, newEnv(t, f, connect)) })
	t.Run("BroadcastRoomAcrossNodes", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		a1, b1, b2 := a.client(t, "post:1"), b.client(t, "post:1"), b.client(t)
		e.roomSubscribed(t, "post:1", 2)
		require.NoError(t, a.a.To("post:1").Emit(bg(t), "comment", map[string]any{"text": "hi", "n": 1}))
		expect(t, a1, "comment", `{"n":1,"text":"hi"}`)
		expect(t, b1, "comment", `{"n":1,"text":"hi"}`)
		// b2 is not in the room: the next thing it sees is the namespace-wide event.
		require.NoError(t, a.a.Of("/").Emit(bg(t), "all", "x", nil, 2))
		expect(t, b2, "all", `"x"`, `null`, `2`)
		expect(t, b1, "all", `"x"`, `null`, `2`)
		expect(t, a1, "all", `"x"`, `null`, `2`)
	})

	t.Run("SeveralRoomsOnceAndExcept", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		both := b.client(t, "r1", "r2")
		vip := b.client(t, "r1", "vip")
		only2 := a.client(t, "r2")
		require.NoError(t, a.a.To("r1", "r2").Except("vip").Emit(bg(t), "m", 1))
		require.NoError(t, a.a.To("r1", "r2").Emit(bg(t), "m", 2))
		expect(t, both, "m", "1")
		expect(t, both, "m", "2") // once each, not twice
		expect(t, vip, "m", "2")  // excluded from the first
		expect(t, only2, "m", "1")
		expect(t, only2, "m", "2")
	})

	t.Run("BroadcastRightAfterJoin", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		bc := b.client(t)
		conn := socketConn(t, b, bc.ID())
		// Fresh rooms each round: no poll can have subscribed them yet.
		for i := range 5 {
			room := "fresh-" + strconv.Itoa(i)
			require.NoError(t, b.a.Join(bg(t), conn, room, "other-"+strconv.Itoa(i)))
			require.NoError(t, a.a.To(room).Emit(bg(t), "first", i))
			expect(t, bc, "first", strconv.Itoa(i))
		}
		// After Leave, the room's broadcasts no longer reach it.
		require.NoError(t, b.a.Leave(bg(t), conn, "fresh-0"))
		require.NoError(t, a.a.To("fresh-0").Emit(bg(t), "gone", 1))
		require.NoError(t, a.a.Of("/").Emit(bg(t), "all", 2))
		expect(t, bc, "all", "2")
		// A new socket's id reaches it from another node once its first
		// event ("join") is answered: with per-room subscriptions its id
		// room's channel is subscribed before that event is handled.
		fresh := b.client(t, "any")
		require.NoError(t, a.a.To(fresh.ID()).Emit(bg(t), "to-you", 1))
		expect(t, fresh, "to-you", "1")
		// A conn of a namespace not served is an error, not a silent join.
		require.ErrorIs(t, b.a.Join(bg(t), otherNamespaceConn{conn}, "x"), redisadapter.ErrUnknownNamespace)
	})

	t.Run("LocalOnly", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		ac, bc := a.client(t, "r"), b.client(t, "r")
		e.roomSubscribed(t, "r", 2)
		require.NoError(t, a.a.To("r").Local().Emit(bg(t), "local", 1))
		require.NoError(t, a.a.To("r").Emit(bg(t), "global", 2))
		expect(t, ac, "local", "1")
		expect(t, ac, "global", "2")
		expect(t, bc, "global", "2")
	})

	t.Run("Namespaces", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, &redisadapter.Options{Namespaces: []string{"/", "/chat"}})
		root := b.client(t)
		chat := b.client(t)
		require.NoError(t, chat.Join("/chat"))
		eventually(t, "chat socket connected on b", func() bool {
			s, _ := b.a.Of("/chat").Local().CountSockets(bg(t))
			return s == 1
		})
		require.NoError(t, a.a.Of("/chat").Emit(bg(t), "c", "in chat"))
		require.NoError(t, a.a.Of("/").Emit(bg(t), "r", "in root"))
		// The chat client is connected to both namespaces; each gets its
		// own event (the order between namespaces is not kept).
		var got []string
		for range 2 {
			e, err := chat.NextAny(wait)
			require.NoError(t, err)
			got = append(got, e.Namespace+" "+e.Name)
		}
		require.ElementsMatch(t, []string{"/chat c", " r"}, got)
		expect(t, root, "r", `"in root"`) // root never saw "c"

		// SetData finds the namespace from the conn.
		var chatConn socketio.Conn
		b.srv.ForEach("/chat", chat.ID(), func(c socketio.Conn) { chatConn = c })
		require.NoError(t, b.a.SetData(chatConn, "chatting"))
		sockets, err := a.a.Of("/chat").FetchSockets(bg(t))
		require.NoError(t, err)
		require.Len(t, sockets, 1)
		require.JSONEq(t, `"chatting"`, string(sockets[0].Data))

		require.ErrorIs(t, a.a.Of("/nope").Emit(bg(t), "x"), redisadapter.ErrUnknownNamespace)
		require.Panics(t, func() { a.a.Of("/nope").OnConnect(nil) }, "registering on a namespace not served")
	})

	t.Run("RemoteJoinLeaveDisconnect", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, nil)
		bc := b.client(t, "post:1")
		ac := a.client(t, "post:1")
		require.NoError(t, a.a.To("post:1").SocketsJoin(bg(t), "readers"))
		eventually(t, "remote join applied on b", func() bool { return b.srv.RoomLen("/", "readers") == 1 })
		require.Equal(t, 1, a.srv.RoomLen("/", "readers"), "the local socket joined before SocketsJoin returned")
		e.roomSubscribed(t, "readers", 2)
		require.NoError(t, b.a.To("readers").Emit(bg(t), "hello", 1))
		expect(t, bc, "hello", "1")
		expect(t, ac, "hello", "1")

		require.NoError(t, a.a.To(bc.ID()).SocketsLeave(bg(t), "readers"))
		eventually(t, "remote leave applied on b", func() bool { return b.srv.RoomLen("/", "readers") == 0 })

		require.NoError(t, a.a.To(bc.ID()).DisconnectSockets(bg(t), true))
		select {
		case <-bc.Closed():
		case <-time.After(wait):
			t.Fatal("remote disconnect did not close the client")
		}
		eventually(t, "b forgot the socket", func() bool {
			n, _ := b.a.Of("/").Local().CountSockets(bg(t))
			return n == 0
		})
	})

	t.Run("FetchCountRoomsServers", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b, third := e.node(t, nil), e.node(t, nil), e.node(t, nil)
		ac := a.client(t, "post:9")
		bc := b.client(t, "post:9", "extra")
		third.client(t)
		// Its root CONNECT is sent before OnConnect runs: no join acked it.
		eventually(t, "third's socket tracked", func() bool { return third.a.Stats().Sockets == 1 })
		var bconn socketio.Conn
		b.srv.ForEach("/", bc.ID(), func(c socketio.Conn) { bconn = c })
		require.NoError(t, b.a.SetData(bconn, map[string]string{"user": "ada"}))
		n, err := a.a.Of("/").ServerCount(bg(t))
		require.NoError(t, err)
		require.Equal(t, 3, n, "exactly this test's nodes: the key is the test's own")

		sockets, err := a.a.To("post:9").FetchSockets(bg(t))
		require.NoError(t, err)
		require.Len(t, sockets, 2)
		byID := map[string]redisadapter.RemoteSocket{}
		for _, s := range sockets {
			byID[s.ID] = s
		}
		require.Equal(t, a.a.UID(), byID[ac.ID()].Node)
		require.Equal(t, b.a.UID(), byID[bc.ID()].Node)
		require.ElementsMatch(t, []string{bc.ID(), "post:9", "extra"}, byID[bc.ID()].Rooms)
		require.Equal(t, "127.0.0.1", byID[bc.ID()].Handshake.Address)
		require.NotZero(t, byID[bc.ID()].Handshake.Issued)
		require.JSONEq(t, `{"user":"ada"}`, string(byID[bc.ID()].Data))
		require.JSONEq(t, `{}`, string(byID[ac.ID()].Data))

		count, err := b.a.To("post:9").CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 2, count)
		count, err = b.a.To("post:9").Except("extra").CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 1, count)
		count, err = third.a.Of("/").CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 3, count)

		rooms, err := third.a.Of("/").AllRooms(bg(t))
		require.NoError(t, err)
		require.Subset(t, rooms, []string{"post:9", "extra", ac.ID(), bc.ID()})
	})

	t.Run("ServerSideEmit", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b, third := e.node(t, nil), e.node(t, nil), e.node(t, nil)
		for i, n := range []*node{b, third} {
			n.a.Of("/").OnServerSideEmit("ping", func(args []json.RawMessage) any {
				return map[string]any{"node": i, "got": args}
			})
		}
		acks, err := a.a.Of("/").ServerSideEmit(bg(t), "ping", "p", 7)
		require.NoError(t, err)
		require.Len(t, acks, 2)
		for _, ack := range acks {
			require.Contains(t, string(ack), `"got":["p",7]`)
		}

		// A node without a handler does not answer: the caller gets what
		// arrived and an error that says so, at the deadline.
		third.a.Of("/").OnServerSideEmit("only-b", nil)
		b.a.Of("/").OnServerSideEmit("only-b", func([]json.RawMessage) any { return "b" })
		// A second: b's answer comes through Redis in time even on a loaded
		// machine (each such wait costs a test its whole length).
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		acks, err = a.a.Of("/").ServerSideEmit(ctx, "only-b")
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.ErrorContains(t, err, "1 of 2 other nodes answered before the caller's deadline: context deadline exceeded")
		require.Equal(t, []json.RawMessage{json.RawMessage(`"b"`)}, acks)
		// Only catches a call that outlives its caller's 1 s context
		// (RequestTimeout is 5 s): a bound against a hang, not a measurement.
		require.Less(t, time.Since(start), 4*time.Second)
		require.EqualValues(t, 1, a.a.Stats().RequestTimeouts)

		// Without a deadline of the caller's, the error names the limit that ran out.
		short := e.node(t, &redisadapter.Options{RequestTimeout: time.Second})
		acks, err = short.a.Of("/").ServerSideEmit(context.Background(), "only-b")
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.ErrorContains(t, err, "1 of 3 other nodes answered before RequestTimeout 1s passed")
		require.NotContains(t, err.Error(), "context deadline exceeded")
		require.Equal(t, []json.RawMessage{json.RawMessage(`"b"`)}, acks)
	})

	t.Run("Emitter", func(t *testing.T) { emitterSuite(t, newEnv(t, f, connect)) })
	t.Run("EmitterRequests", func(t *testing.T) { emitterRequestsSuite(t, newEnv(t, f, connect)) })
	lifecycleSuite(t, f, connect)

	t.Run("MalformedInputIsDroppedAndCounted", func(t *testing.T) {
		e := newEnv(t, f, connect)
		a, b := e.nodes(t, &redisadapter.Options{MaxMessageSize: 4096})
		bc := b.client(t, "r")
		e.roomSubscribed(t, "r", 1)
		raw := rawClient(t, e.c)
		publish := func(ch, msg string) error {
			if e.ShardedPubSub {
				return raw.Do(bg(t), raw.B().Spublish().Channel(ch).Message(msg).Build()).Error()
			}
			return raw.Do(bg(t), raw.B().Publish().Channel(ch).Message(msg).Build()).Error()
		}
		// Messages no node would send, each on a channel b listens to: each
		// is dropped and counted once.
		huge := make([]byte, 5000)
		counted := [][2]string{
			{e.namespace("/"), "garbage"},
			{e.namespace("/"), string(huge)},
		}
		if !e.Streams { // rooms have channels: a truncated frame of each encoding
			counted = append(counted,
				[2]string{e.room("/", "r"), "\x93\xa6abcdef"},
				[2]string{e.room("/", "r"), `{"type":3,"data":{"packet":`})
		}
		var ignored [][2]string
		if e.NodeChannels {
			counted = append(counted, [2]string{e.own("/", b.a.UID()), `{"type":8,"data":{"requestId":`})
			// A channel no node subscribes to (classic nodes subscribe to a
			// pattern that would match it).
			ignored = append(ignored, [2]string{e.own("/", b.a.UID()) + "x#", "never subscribed: not counted"})
		} else {
			counted = append(counted,
				[2]string{e.requests("/"), `{"uid":"x","type":99}`},
				[2]string{e.responses("/", ""), "{not json"})
		}
		for _, m := range append(counted, ignored...) {
			require.NoError(t, publish(m[0], m[1]))
		}
		want := uint64(len(counted))
		if e.Streams {
			// Stream entries no node would write: each is dropped and counted.
			for _, fv := range [][]string{
				{"uid", "x", "nsp", "/", "type", "3", "data", "{not json"},
				{"uid", "x", "nsp", "/", "type", "nope"},
				{"uid", "x", "nsp", "/", "type", "99", "data", "{}"},
				{"uid", "x", "nsp", "/", "type", "3", "data", "!!!not base64"},
				{"uid", "x", "nsp", "/", "type", "3", "data", "kw=="}, // base64 of a truncated msgpack array
				{"uid", "x", "nsp", "/", "type", "3", "data", string(huge)},
			} {
				cmd := raw.B().Xadd().Key(e.stream()).Id("*").FieldValue()
				for i := 0; i < len(fv); i += 2 {
					cmd = cmd.FieldValue(fv[i], fv[i+1])
				}
				require.NoError(t, raw.Do(bg(t), cmd.Build()).Error())
				want++
			}
		}
		eventually(t, "every bad message counted on b", func() bool { return b.a.Stats().Malformed >= want })
		// The loop still delivers; once a broadcast sent after the bad
		// messages has arrived, nothing more is counted: once each, and
		// nothing for the channel no node subscribes to.
		require.NoError(t, a.a.To("r").Emit(bg(t), "still", "alive"))
		expect(t, bc, "still", `"alive"`)
		require.Equal(t, want, b.a.Stats().Malformed)
		// And publishing something too large is an error, not a silent drop.
		err := a.a.To("r").Emit(bg(t), "big", string(huge))
		require.ErrorIs(t, err, redisadapter.ErrMessageTooLarge)
	})
}

// startNodes starts two nodes with the same options (helper for the suite's
// option variants).
func startNodes(t *testing.T, c redisadapter.Connector, opts *redisadapter.Options) (*node, *node) {
	return startNode(t, c, opts), startNode(t, c, opts)
}

// rawClient is a plain rueidis client to the same Redis, for injecting
// messages no adapter would send.
func rawClient(t testing.TB, c redisadapter.Connector) rueidis.Client {
	t.Helper()
	var opt rueidis.ClientOption
	if s, ok := c.(redisadapter.Streams); ok {
		c = s.Connector
	}
	switch c := c.(type) {
	case redisadapter.Standalone:
		opt = rueidis.ClientOption{InitAddress: []string{c.Addr}, Username: c.Username, Password: c.Password,
			SelectDB: c.DB, TLSConfig: c.TLSConfig, ForceSingleClient: true}
	case redisadapter.Sentinel:
		opt = rueidis.ClientOption{InitAddress: c.Addrs, Sentinel: rueidis.SentinelOption{MasterSet: c.MasterName}}
	case redisadapter.Cluster:
		opt = rueidis.ClientOption{InitAddress: c.Addrs}
	}
	opt.DisableCache = true
	cl, err := rueidis.NewClient(opt)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// eachRedis calls f with a client of each Redis node c reaches: a
// cluster's every node, replicas included; Sentinel's master.
func eachRedis(t *testing.T, c redisadapter.Connector, f func(addr string, n rueidis.Client)) {
	t.Helper()
	nodes := rawClient(t, c).Nodes()
	require.NotEmpty(t, nodes)
	for addr, n := range nodes {
		f(addr, n)
	}
}

// otherNamespaceConn is a conn of a namespace no adapter serves.
type otherNamespaceConn struct{ socketio.Conn }

func (otherNamespaceConn) Namespace() string { return "/not-served" }

func TestStandalone(t *testing.T) {
	srv := redistest.Start(t)
	suite(t, classicMode, func(string) redisadapter.Connector {
		return redisadapter.Standalone{Addr: srv.Addr()}
	})
}

func TestStandaloneRoomSubscriptions(t *testing.T) {
	srv := redistest.Start(t)
	suite(t, classicRoomsMode, func(string) redisadapter.Connector {
		return redisadapter.Standalone{Addr: srv.Addr(), RoomSubscriptions: true}
	})
}

func TestSentinel(t *testing.T) {
	set := sharedSentinel(t)
	suite(t, classicMode, func(string) redisadapter.Connector {
		return redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}
	})
}

func TestSentinelRoomSubscriptions(t *testing.T) {
	set := sharedSentinel(t)
	suite(t, classicRoomsMode, func(string) redisadapter.Connector {
		return redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs(), RoomSubscriptions: true}
	})
}

func TestCluster(t *testing.T) {
	set := sharedCluster(t)
	t.Run("Classic", func(t *testing.T) {
		suite(t, classicMode, func(string) redisadapter.Connector { return redisadapter.Cluster{Addrs: set.Addrs()} })
	})
	t.Run("ClassicRoomSubscriptions", func(t *testing.T) {
		suite(t, classicRoomsMode, func(string) redisadapter.Connector {
			return redisadapter.Cluster{Addrs: set.Addrs(), RoomSubscriptions: true}
		})
	})
	t.Run("Sharded", func(t *testing.T) {
		suite(t, shardedMode, func(string) redisadapter.Connector {
			return redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
		})
	})
}

// Broadcasts flow again after Redis restarts, with no call from the user;
// while it is away the node says so rather than pretend.
func TestStandaloneRestart(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, b := startNode(t, c, nil), startNode(t, c, nil)
	bc := b.client(t, "r")
	require.NoError(t, a.a.To("r").Emit(bg(t), "before", 1))
	expect(t, bc, "before", "1")

	srv.Stop(t)
	stopped := time.Now()
	eventually(t, "the node knows its subscriptions are down", func() bool { return !a.a.Stats().Subscribed })
	// The outage lasts 2 s, long enough for a client's back-off to grow.
	// Throughout, the node says it is unavailable, at once.
	for time.Since(stopped) < 2*time.Second {
		err := a.a.Ping(bg(t))
		require.ErrorIs(t, err, redisadapter.ErrUnavailable)
		start := time.Now()
		err = a.a.To("r").Emit(context.Background(), "lost", 0)
		require.ErrorIs(t, err, redisadapter.ErrPublish)
		require.ErrorIs(t, err, redisadapter.ErrUnavailable)
		// Generous: it only tells failing at once from waiting for Redis
		// until RequestTimeout (5 s).
		require.Less(t, time.Since(start), 4*time.Second, "Emit fails fast while unavailable")
		_, err = a.a.Of("/").ServerCount(bg(t))
		require.ErrorIs(t, err, redisadapter.ErrUnavailable)
		time.Sleep(50 * time.Millisecond) // paces the checks; nothing waits on it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := a.a.Of("/").AllRooms(ctx)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable, "a request does not answer with this node's view alone")

	srv.Restart(t)
	// Restart returns once Redis answers PING. The bound only catches a
	// node that does not recover; BenchmarkRecovery measures how soon.
	got := resumed(t, a, []*siotest.Client{bc}, time.Now(), 2*wait)
	t.Logf("broadcasts resumed %v after redis answered again, after 2 s down", got.Round(time.Millisecond))
	eventually(t, "both nodes healthy", func() bool {
		return a.a.Ping(bg(t)) == nil && b.a.Ping(bg(t)) == nil
	})
	require.True(t, b.a.Stats().Subscribed)
	require.Positive(t, b.a.Stats().Resubscribes)
	n, err := a.a.Of("/").ServerCount(bg(t))
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// Close fails pending requests with ErrClosed and leaves nothing running
// (TestMain checks for leaked goroutines).
func TestCloseFailsPending(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, _ := startNodes(t, c, nil)
	// b has no handler for "slow": the request stays pending until Close.
	errc := make(chan error, 1)
	go func() {
		_, err := a.a.Of("/").ServerSideEmit(context.Background(), "slow")
		errc <- err
	}()
	eventually(t, "request published", func() bool { return a.a.Stats().Published >= 1 })
	require.NoError(t, a.a.Close(bg(t)))
	select {
	case err := <-errc:
		require.ErrorIs(t, err, redisadapter.ErrClosed)
	case <-time.After(wait):
		t.Fatal("pending request not failed by Close")
	}
	require.ErrorIs(t, a.a.To("r").Emit(bg(t), "x"), redisadapter.ErrClosed)
	require.ErrorIs(t, a.a.Ping(bg(t)), redisadapter.ErrClosed)
	require.NoError(t, a.a.Close(bg(t)), "a second Close is a no-op")
}

func TestNewErrors(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	ctx := bg(t)
	_, err := redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: srv.Addr(), Password: "wrong"}, nil)
	require.ErrorContains(t, err, "WRONGPASS")
	require.NotErrorIs(t, err, redisadapter.ErrUnavailable, "Redis answered: it refused")

	// Nothing listens there: Redis unavailable, which a caller can test for.
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))}, nil)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable)
	require.ErrorContains(t, err, "connection refused")

	a, err := redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: srv.Addr(), Password: "right"}, nil)
	require.NoError(t, err)
	require.NoError(t, a.Ping(ctx))
	require.NoError(t, a.Close(ctx))

	_, err = redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: "http://x"}, nil)
	require.ErrorIs(t, err, redisadapter.ErrConfig)
	_, err = redisadapter.New(ctx, socketio.NewServer(nil), redisadapter.Standalone{Addr: srv.Addr()}, &redisadapter.Options{Key: "a#b"})
	require.ErrorIs(t, err, redisadapter.ErrConfig)
}

// Default session ids collide across nodes; the adapter says so.
func TestDefaultIDsAreReported(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	n := startNode(t, c, nil)
	gen := redisadapter.SessionIDGenerator{}
	ids := map[string]bool{}
	for range 1000 {
		id := gen.NewID()
		require.Len(t, id, 20)
		require.False(t, ids[id])
		ids[id] = true
	}
	n.client(t)
	require.Zero(t, n.a.Stats().IDCollisions)

	plain := socketio.NewServer(nil) // default counter ids
	a, err := redisadapter.New(bg(t), plain, c, nil)
	require.NoError(t, err)
	defer a.Close(bg(t))
	go plain.Serve()
	defer plain.Close()
	hs := httptest.NewServer(plain)
	defer hs.Close()
	cl, err := siotest.Dial(hs.URL)
	require.NoError(t, err)
	defer cl.Close()
	eventually(t, "counter id reported", func() bool { return a.Stats().IDCollisions == 1 })
}

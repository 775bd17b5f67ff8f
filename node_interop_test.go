package redisadapter_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
)

func dialNode(t *testing.T, url string) *nodetest.Client { return nodetest.Dial(t, url, "") }

// startNodeServer runs a Node.js socket.io 4 server with
// @socket.io/redis-adapter 8 on the given Redis (REDIS_URL=... or
// REDIS_CLUSTER=... and SHARDED=1 in env).
func startNodeServer(t testing.TB, env ...string) (*nodetest.Proc, string, string) {
	t.Helper()
	port := redistest.FreePort(t)
	p := nodetest.Start(t, "server.js", append([]string{fmt.Sprintf("PORT=%d", port)}, env...))
	m := p.Wait(wait, "ready", func(m nodetest.Msg) bool { return m["ready"] != nil })
	return p, fmt.Sprintf("http://127.0.0.1:%d", port), m.Str("uid")
}

func strs(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var out []string
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

// The npm socket.io-client 2.5.0 against a go-socket.io server with the
// adapter: connect, ack, cross-node room broadcast; over websocket, and over
// long-polling (the client's default first transport), since broadcasts are
// written to the engine.io connection directly.
func TestNpmClientAgainstGoNodes(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	for _, tr := range []struct {
		name string
		dial func(testing.TB, string) *nodetest.Client
	}{
		{"websocket", func(t testing.TB, url string) *nodetest.Client { return nodetest.Dial(t, url, "") }},
		{"polling", nodetest.DialPolling},
	} {
		t.Run(tr.name, func(t *testing.T) {
			a, b := startNodes(t, c, &redisadapter.Options{Key: "npm-" + tr.name})
			ca, cb := tr.dial(t, a.url), tr.dial(t, b.url)
			require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, ca.Call(t, "join", "post:1"))
			require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, cb.Call(t, "join", "post:1"))
			for i := range 3 {
				require.NoError(t, b.a.To("post:1").Emit(bg(t), "comment", map[string]any{"text": "hello", "i": i}))
			}
			for _, cl := range []*nodetest.Client{ca, cb} {
				for i := range 3 {
					ev, args := cl.Next(t)
					require.Equal(t, "comment", ev)
					require.JSONEq(t, fmt.Sprintf(`[{"text":"hello","i":%d}]`, i), args)
				}
			}
			n, err := a.a.To("post:1").CountSockets(bg(t))
			require.NoError(t, err)
			require.Equal(t, 2, n)
			// go-socket.io holds a pending long-poll until its ping timeout
			// (a minute), and the HTTP server's Close waits for it; closing
			// the sessions ends it now.
			require.NoError(t, a.a.Of("/").DisconnectSockets(bg(t), true))
			for _, cl := range []*nodetest.Client{ca, cb} {
				ev, _ := cl.Next(t)
				require.Equal(t, "disconnected", ev)
			}
		})
	}
}

// A Go node and a Node.js node on one Redis: broadcasts and every request
// type, in both directions, for each protocol: Node's createAdapter on a
// standalone Redis and on a cluster, and createShardedAdapter.
func TestNodeJSInterop(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		interop(t, func(string) redisadapter.Connector { return redisadapter.Standalone{Addr: srv.Addr()} }, "REDIS_URL="+srv.URL())
	})
	// Go nodes that SUBSCRIBE per room, Node.js nodes that PSUBSCRIBE.
	t.Run("StandaloneRoomSubscriptions", func(t *testing.T) {
		srv := redistest.Start(t)
		interop(t, func(string) redisadapter.Connector {
			return redisadapter.Standalone{Addr: srv.Addr(), RoomSubscriptions: true}
		}, "REDIS_URL="+srv.URL())
	})
	set := sharedCluster(t)
	cluster := "REDIS_CLUSTER=" + strings.Join(set.Addrs(), ",")
	t.Run("ClusterClassic", func(t *testing.T) {
		interop(t, func(string) redisadapter.Connector { return redisadapter.Cluster{Addrs: set.Addrs()} }, cluster)
	})
	t.Run("ClusterClassicRoomSubscriptions", func(t *testing.T) {
		interop(t, func(string) redisadapter.Connector {
			return redisadapter.Cluster{Addrs: set.Addrs(), RoomSubscriptions: true}
		}, cluster)
	})
	t.Run("ClusterSharded", func(t *testing.T) {
		interop(t, func(string) redisadapter.Connector { return redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true} }, cluster, "SHARDED=1")
	})
}

// interop runs a Go node of connect's connector and a Node.js node (env:
// which adapter, on which Redis) under a key, and stream name, of the
// test's own: on the shared cluster, the servers counted are these two.
func interop(t *testing.T, connect func(name string) redisadapter.Connector, env ...string) {
	key := uniqueKey(t)
	c := connect(key)
	g := startNode(t, c, &redisadapter.Options{Key: key})
	env = append(env, "KEY="+key)
	js, jsURL, jsUID := startNodeServer(t, env...)
	call := func(cmd map[string]any) nodetest.Msg { return js.Call(wait, cmd) }
	streamsMode := slices.Contains(env, "STREAMS=1")
	sharded := slices.Contains(env, "SHARDED=1") && !streamsMode
	// The sharded and streams adapters speak socket.io-adapter's ClusterAdapter messages.
	clusterAdapter := sharded || streamsMode
	clustered := slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "REDIS_CLUSTER=") })
	perRoom := classicRoomSubscriptions(c)

	gc := g.client(t, "post:1") // Go test client on the Go node
	jc := dialNode(t, jsURL)    // socket.io-client 2.5.0 on the Node.js node
	require.Len(t, jc.Call(t, "join", "post:1"), 1)
	jc.Call(t, "join", "js-only")
	if perRoom {
		// The Go node reads a room's broadcasts once its channel is
		// subscribed: its client's room, and its client's own id room.
		names := names{key: key}
		channelSubscribers(t, c, names.room("/", "post:1"), 1)
		channelSubscribers(t, c, names.room("/", gc.ID()), 1)
	}
	if sharded {
		// Both nodes SSUBSCRIBE a room's channel a moment after a local
		// socket joined it (the Go node within its room sync's interval,
		// Node's adapter in its "dynamic" mode): a one-room broadcast
		// before that misses them.
		shardSubscribers(t, c, names{key: key}.room("/", "post:1"), 2)
	}

	// A Go node's gap notice (gaps.go), in the bytes TestGapNoticeRoundTrip
	// pins, where a Go node sends it (not in streams mode): Node's adapter
	// ignores the type (it would crash on an async handler's throw), and
	// answers a request sent after it on the same channel.
	t.Run("GapNoticeIgnored", func(t *testing.T) {
		if streamsMode {
			t.Skip("a Go node sends no gap notice in streams mode")
		}
		raw := rawClient(t, c)
		ctx := bg(t)
		names := names{key: key}
		if clusterAdapter {
			notice := `{"uid":"gapUID","nsp":"/","type":1000,"data":{"since":1235,"until":2}}`
			cmd := raw.B().Publish().Channel(names.namespace("/")).Message(notice).Build()
			if sharded {
				cmd = raw.B().Spublish().Channel(names.namespace("/")).Message(notice).Build()
			}
			require.NoError(t, raw.Do(ctx, cmd).Error())
		} else {
			notice := `{"uid":"gapUID","type":1000,"data":{"since":1235,"until":2}}`
			require.NoError(t, raw.Do(ctx, raw.B().Publish().Channel(names.requests("/")).Message(notice).Build()).Error())
		}
		sockets, err := g.a.Of("/").FetchSockets(ctx)
		require.NoError(t, err)
		ids := []string{}
		for _, s := range sockets {
			ids = append(ids, s.ID)
		}
		require.ElementsMatch(t, []string{gc.ID(), jc.ID}, ids)
	})

	t.Run("ServerCount", func(t *testing.T) {
		n, err := g.a.Of("/").ServerCount(bg(t))
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, "2", string(call(map[string]any{"op": "serverCount"})["count"]))
	})

	t.Run("NodeBroadcastsReachGo", func(t *testing.T) {
		call(map[string]any{"op": "emit", "rooms": []string{"post:1"}, "event": "one-room", "args": []any{map[string]any{"n": 1}}})
		call(map[string]any{"op": "emit", "rooms": []string{"post:1", "other"}, "event": "two-rooms", "args": []any{"x"}})
		call(map[string]any{"op": "emit", "event": "everyone", "args": []any{1.5, nil, true}})
		call(map[string]any{"op": "emit", "rooms": []string{"post:1"}, "except": []string{gc.ID()}, "event": "not-you"})
		call(map[string]any{"op": "emit", "rooms": []string{"js-only"}, "event": "not-here"})
		call(map[string]any{"op": "emit", "rooms": []string{gc.ID()}, "event": "to-you", "args": []any{"id"}})
		call(map[string]any{"op": "emit", "event": "last"})
		if !clustered && !perRoom {
			expect(t, gc, "one-room", `{"n":1}`)
			expect(t, gc, "two-rooms", `"x"`)
			expect(t, gc, "everyone", `1.5`, `null`, `true`)
			expect(t, gc, "to-you", `"id"`)
			expect(t, gc, "last")
		} else {
			// node-redis routes PUBLISH by no key, so each goes to a random
			// cluster node, and the cluster bus does not keep one sender's
			// order across nodes (sharded: room and namespace channels sit
			// on different shards). With per-room subscriptions a room's
			// channel has a connection of its own. Only the set is certain.
			want := map[string]string{"one-room": `[{"n":1}]`, "two-rooms": `["x"]`, "everyone": `[1.5,null,true]`, "to-you": `["id"]`, "last": `[]`}
			for len(want) > 0 {
				e, err := gc.NextAny(wait)
				require.NoError(t, err, "still waiting for %v", want)
				args, ok := want[e.Name]
				require.True(t, ok, "unexpected or repeated %q", e.Name)
				got, err := json.Marshal(append([]json.RawMessage{}, e.Args...))
				require.NoError(t, err)
				require.JSONEq(t, args, string(got), e.Name)
				delete(want, e.Name)
			}
		}
		// jc is in post:1 and js-only: it gets all six, the room channels'
		// possibly out of order with sharded pub/sub.
		var seen []string
		for range 6 {
			ev, _ := jc.Next(t)
			seen = append(seen, ev)
		}
		require.ElementsMatch(t, []string{"one-room", "two-rooms", "everyone", "not-you", "not-here", "last"}, seen)
	})

	t.Run("GoBroadcastsReachNode", func(t *testing.T) {
		require.NoError(t, g.a.To("post:1").Emit(bg(t), "from-go", map[string]any{"text": "hi", "n": 2}))
		require.NoError(t, g.a.To("js-only", "nowhere").Emit(bg(t), "two-rooms", 1))
		require.NoError(t, g.a.Of("/").Except("js-only").Emit(bg(t), "skipped"))
		require.NoError(t, g.a.Of("/").Emit(bg(t), "all"))
		got := map[string]string{}
		var order []string
		for range 3 {
			ev, args := jc.Next(t)
			got[ev] = args
			order = append(order, ev)
		}
		require.JSONEq(t, `[{"text":"hi","n":2}]`, got["from-go"])
		if sharded {
			// A room's channel and the namespace's live on different shards:
			// their messages may swap (as with Node's sharded adapter).
			require.ElementsMatch(t, []string{"from-go", "two-rooms", "all"}, order)
		} else {
			require.Equal(t, []string{"from-go", "two-rooms", "all"}, order)
		}
	})

	t.Run("FetchSocketsBothWays", func(t *testing.T) {
		m := call(map[string]any{"op": "fetch", "rooms": []string{"post:1"}})
		var sockets []struct {
			ID    string   `json:"id"`
			Rooms []string `json:"rooms"`
		}
		require.NoError(t, json.Unmarshal(m["sockets"], &sockets))
		ids := []string{}
		for _, s := range sockets {
			ids = append(ids, s.ID)
			if s.ID == gc.ID() {
				require.ElementsMatch(t, []string{gc.ID(), "post:1"}, s.Rooms)
			}
		}
		require.ElementsMatch(t, []string{gc.ID(), jc.ID}, ids)

		got, err := g.a.To("post:1").FetchSockets(bg(t))
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, s := range got {
			if s.ID == jc.ID {
				if clusterAdapter {
					require.Equal(t, jsUID, s.Node, "ClusterAdapter messages name their sender")
				} else {
					require.Empty(t, s.Node, "classic Node.js responses do not name the node")
				}
				require.ElementsMatch(t, []string{jc.ID, "post:1", "js-only"}, s.Rooms)
				require.Equal(t, "websocket", s.Handshake.Query["transport"])
			} else {
				require.Equal(t, gc.ID(), s.ID)
			}
		}
		n, err := g.a.To("post:1").CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})

	t.Run("AllRoomsBothWays", func(t *testing.T) {
		rooms, err := g.a.Of("/").AllRooms(bg(t))
		require.NoError(t, err)
		require.Subset(t, rooms, []string{"post:1", "js-only", jc.ID, gc.ID()})
		if clusterAdapter {
			return // Node's ClusterAdapter has no allRooms
		}
		nodeRooms := strs(t, call(map[string]any{"op": "allRooms"})["rooms"])
		require.Subset(t, nodeRooms, []string{"post:1", "js-only", jc.ID, gc.ID()})
	})

	t.Run("SocketsJoinLeaveBothWays", func(t *testing.T) {
		call(map[string]any{"op": "join", "rooms": []string{gc.ID()}, "join": "from-node"})
		eventually(t, "Node's socketsJoin applied on the Go node", func() bool { return g.srv.RoomLen("/", "from-node") == 1 })
		call(map[string]any{"op": "leave", "rooms": []string{gc.ID()}, "leave": "from-node"})
		eventually(t, "Node's socketsLeave applied on the Go node", func() bool { return g.srv.RoomLen("/", "from-node") == 0 })

		require.NoError(t, g.a.To("js-only").SocketsJoin(bg(t), "from-go"))
		eventually(t, "Go's socketsJoin applied on the Node.js node", func() bool {
			return slices.Contains(strs(t, call(map[string]any{"op": "localRooms"})["rooms"]), "from-go")
		})
		require.NoError(t, g.a.To("js-only").SocketsLeave(bg(t), "from-go"))
		eventually(t, "Go's socketsLeave applied on the Node.js node", func() bool {
			return !slices.Contains(strs(t, call(map[string]any{"op": "localRooms"})["rooms"]), "from-go")
		})
	})

	t.Run("ServerSideEmitBothWays", func(t *testing.T) {
		g.a.Of("/").OnServerSideEmit("ping", func(args []json.RawMessage) any {
			return map[string]any{"from": "go", "got": args}
		})
		m := call(map[string]any{"op": "serverSideEmit", "event": "ping", "args": []any{"a", 1}})
		require.JSONEq(t, `[{"from":"go","got":["a",1]}]`, string(m["acks"]))

		acks, err := g.a.Of("/").ServerSideEmit(bg(t), "ping", "b", 2)
		require.NoError(t, err)
		require.Len(t, acks, 1)
		require.JSONEq(t, `{"from":"node","got":["b",2]}`, string(acks[0]))
		js.Wait(wait, "ping event on node", func(m nodetest.Msg) bool { return m.Str("event") == "ping" })
	})

	t.Run("EmitWithAckBothWays", func(t *testing.T) {
		jc.AutoAck(t, true)
		defer jc.AutoAck(t, false)
		ackAs(gc, "go-client")
		defer gc.AckWith(nil)

		// Go asks: its own client and the Node.js server's both answer.
		acks, err := g.a.To("post:1").Timeout(wait).EmitWithAck(bg(t), "poll", map[string]any{"q": 1})
		require.NoError(t, err)
		require.Len(t, acks, 2)
		var fromNode, fromGo int
		for _, raw := range acks {
			var a struct {
				ID, Event, Who string
				Args           []json.RawMessage
				Got            json.RawMessage
			}
			require.NoError(t, json.Unmarshal(raw, &a), "ack %s", raw)
			switch {
			case a.ID == jc.ID:
				fromNode++
				require.Equal(t, "poll", a.Event)
				require.Len(t, a.Args, 1)
				require.JSONEq(t, `{"q":1}`, string(a.Args[0]))
			case a.Who == "go-client":
				fromGo++
				require.JSONEq(t, `{"q":1}`, string(a.Got))
			default:
				t.Fatalf("unexpected ack %s", raw)
			}
		}
		require.Equal(t, 1, fromNode)
		require.Equal(t, 1, fromGo)

		// Except, and a room only the Node.js server has.
		acks, err = g.a.To("post:1", "js-only").Except(gc.ID()).Timeout(wait).EmitWithAck(bg(t), "poll", 2)
		require.NoError(t, err)
		require.Len(t, acks, 1)
		require.Contains(t, string(acks[0]), jc.ID)

		// Node.js asks (emitWithAck with a timeout): the Go node reports
		// its client count, then forwards its client's ack.
		m := call(map[string]any{"op": "emitWithAck", "rooms": []string{"post:1"}, "event": "poll", "args": []any{3}, "timeout": 4000})
		require.Equal(t, "false", string(m["timedOut"]), "acks: %s", m["acks"])
		var nodeAcks []json.RawMessage
		require.NoError(t, json.Unmarshal(m["acks"], &nodeAcks))
		require.Len(t, nodeAcks, 2)
		joined := string(m["acks"])
		require.Contains(t, joined, `"who":"go-client"`)
		require.Contains(t, joined, jc.ID)

		// A Go client that does not answer: Node times out with the rest.
		gc.AckWith(nil)
		m = call(map[string]any{"op": "emitWithAck", "rooms": []string{"post:1"}, "event": "poll", "args": []any{4}, "timeout": 1000})
		require.Equal(t, "true", string(m["timedOut"]))
		require.NoError(t, json.Unmarshal(m["acks"], &nodeAcks))
		require.Len(t, nodeAcks, 1)
		require.Contains(t, string(nodeAcks[0]), jc.ID)

		// Every poll reached its clients: four to the Node.js server's,
		// three to the Go node's (it was left out of one).
		for range 4 {
			jc.NextNamed(t, "poll")
		}
		for range 3 {
			_, err := gc.Next("poll", wait)
			require.NoError(t, err)
		}
	})

	t.Run("NodeBroadcastWithAck", func(t *testing.T) {
		// To a room no client is in: the Go node answers its client count
		// (0), without which Node's emitWithAck fails at its timeout.
		m := call(map[string]any{"op": "emitWithAck", "rooms": []string{"nobody"}, "event": "ack-me", "timeout": 3000})
		require.JSONEq(t, `[]`, string(m["acks"]))
	})

	t.Run("DisconnectBothWays", func(t *testing.T) {
		require.NoError(t, g.a.To(jc.ID).DisconnectSockets(bg(t), true))
		ev, _ := jc.Next(t)
		require.Equal(t, "disconnected", ev)

		call(map[string]any{"op": "disconnect", "rooms": []string{gc.ID()}})
		select {
		case <-gc.Closed():
		case <-time.After(wait):
			t.Fatal("Node's disconnectSockets did not close the Go node's client")
		}
	})

	require.Zero(t, g.a.Stats().Malformed, "nothing Node sent was dropped")
	require.NotEqual(t, jsUID, g.a.UID())
	require.False(t, strings.Contains(jsUID, "#"))
}

// classicRoomSubscriptions reports whether c is a classic connector with
// RoomSubscriptions.
func classicRoomSubscriptions(c redisadapter.Connector) bool {
	switch c := c.(type) {
	case redisadapter.Standalone:
		return c.RoomSubscriptions
	case redisadapter.Sentinel:
		return c.RoomSubscriptions
	case redisadapter.Cluster:
		return c.RoomSubscriptions
	}
	return false
}

package redisadapter_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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

// emitterSuite: an Emitter, which holds no sockets and never subscribes,
// reaches the sockets and the servers of two nodes in one mode (suite runs
// it in each): broadcasts to rooms, with exceptions, and to namespaces;
// joins, leaves and disconnects; server-side events (with sharded pub/sub
// too, which Node's emitter does not do).
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
	require.NoError(t, em.Of("/admin").ServerSideEmit(bg(t), "flush", "post:1"))
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

	_, err = redisadapter.NewEmitter(bg(t), c, nil)
	require.ErrorIs(t, err, redisadapter.ErrUnavailable, "NewEmitter fails fast when Redis is down")

	require.NoError(t, e.Close(bg(t)))
	require.ErrorIs(t, e.To("r").Emit(bg(t), "x"), redisadapter.ErrClosed)
}

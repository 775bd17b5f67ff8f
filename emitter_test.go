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
)

func newEmitter(t *testing.T, c redisadapter.Connector) redisadapter.Emitter {
	t.Helper()
	e, err := redisadapter.NewEmitter(bg(t), c, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func TestEmitterReachesGoNodes(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{URL: srv.URL()}
	opts := &redisadapter.Options{Namespaces: []string{"/", "/admin"}}
	a, b := startNodes(t, c, opts)
	e := newEmitter(t, c)
	ac, bc, vip := a.client(t, "post:1"), b.client(t, "post:1"), b.client(t, "post:1", "vip")

	require.NoError(t, e.To("post:1").Except("vip").Emit(bg(t), "comment", map[string]string{"text": "from a worker"}))
	require.NoError(t, e.To("post:1").Emit(bg(t), "after"))
	expect(t, ac, "comment", `{"text":"from a worker"}`)
	expect(t, bc, "comment", `{"text":"from a worker"}`)
	expect(t, vip, "after") // excluded from the first
	expect(t, ac, "after")

	require.NoError(t, e.To("vip").SocketsJoin(bg(t), "joined"))
	eventually(t, "emitter's join applied", func() bool { return b.srv.RoomLen("/", "joined") == 1 })
	require.NoError(t, e.To("vip").SocketsLeave(bg(t), "joined"))
	eventually(t, "emitter's leave applied", func() bool { return b.srv.RoomLen("/", "joined") == 0 })

	got := make(chan []json.RawMessage, 2)
	for _, n := range []*node{a, b} {
		n.a.OnServerSideEmit("/admin", "flush", func(args []json.RawMessage) any { got <- args; return nil })
	}
	require.NoError(t, e.Of("/admin").ServerSideEmit(bg(t), "flush", "post:1"))
	for range 2 {
		select {
		case args := <-got:
			require.Equal(t, []json.RawMessage{json.RawMessage(`"post:1"`)}, args)
		case <-time.After(wait):
			t.Fatal("server-side event from the emitter not handled")
		}
	}

	require.NoError(t, e.To(vip.ID()).DisconnectSockets(bg(t), true))
	select {
	case <-vip.Closed():
	case <-time.After(wait):
		t.Fatal("emitter's disconnect did not close the client")
	}
	require.ErrorIs(t, e.Of("chat").Emit(bg(t), "x"), redisadapter.ErrConfig)
	require.Zero(t, a.a.Stats().Malformed+b.a.Stats().Malformed)
}

// Node's @socket.io/redis-emitter publishes; a Go node delivers.
func TestNpmEmitterReachesGoNode(t *testing.T) {
	srv := redistest.Start(t)
	g := startNode(t, redisadapter.Standalone{URL: srv.URL()}, nil)
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
	e := newEmitter(t, redisadapter.Standalone{URL: srv.URL()})
	require.NoError(t, e.To("post:8").Emit(bg(t), "from-go-emitter", map[string]int{"n": 3}))
	require.JSONEq(t, `[{"n":3}]`, jc.NextNamed(t, "from-go-emitter"))
	require.NoError(t, e.To(jc.ID).DisconnectSockets(bg(t), true))
	ev, _ := jc.Next(t)
	require.Equal(t, "disconnected", ev)
}

func TestEmitterUnreachableRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{URL: srv.URL()}
	e := newEmitter(t, c)
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

package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// The fleet view counts readers on every node, Go and Node.js alike: a
// Node.js socket.io server (@socket.io/redis-adapter) on the same Redis that
// sets socket.data.node is counted under its name.
func TestFleetWithNodeJSServer(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	goNodes := startFleet(t, bin, redis.URL(), 2)
	port := redistest.FreePort(t)
	js := nodetest.Start(t, "server.js", []string{fmt.Sprintf("PORT=%d", port), "REDIS_URL=" + redis.URL(), "NODE_NAME=js1"})
	js.Wait(15*time.Second, "ready", func(m nodetest.Msg) bool { return m["ready"] != nil })

	onJS := nodetest.Dial(t, fmt.Sprintf("http://127.0.0.1:%d", port), "")
	require.Equal(t, `"ok"`, string(onJS.Call(t, "join", "post:8")[0])) // server.js joins the room it is given
	var clients []*nodetest.Client
	for _, nd := range goNodes {
		c := nodetest.Dial(t, nd.url, "")
		number(t, c.Call(t, "join", "8"))
		clients = append(clients, c)
	}
	// n2's join told the post's readers, n1's reader among them.
	waitFleetUpdate(t, clients[0], `[{"post":"8","readers":{"n1":1,"n2":1,"js1":1}}]`)

	ack := clients[1].Call(t, "fleet", "8")
	require.Len(t, ack, 1)
	var f struct {
		Post, Node string
		Readers    map[string]int
	}
	require.NoError(t, json.Unmarshal(ack[0], &f))
	require.Equal(t, "8", f.Post)
	require.Equal(t, "n2", f.Node, "the node serving this socket")
	require.Equal(t, map[string]int{"n1": 1, "n2": 1, "js1": 1}, f.Readers)

	require.Equal(t, `"ok"`, string(clients[1].Call(t, "leave", "8")[0]))
	waitFleetUpdate(t, clients[0], `[{"post":"8","readers":{"n1":1,"js1":1}}]`)
}

// Joins in a burst: "fleet:update" is computed off the handlers and
// coalesced, yet the readers see the final count.
func TestFleetUpdateAfterBurst(t *testing.T) {
	bin := buildExample(t)
	redis := redistest.Start(t)
	nd := startFleet(t, bin, redis.URL(), 1)[0]
	observer := nodetest.Dial(t, nd.url, "")
	number(t, observer.Call(t, "join", "12"))
	var burst []*nodetest.Client
	for range 12 {
		burst = append(burst, nodetest.Dial(t, nd.url, ""))
	}
	for i, c := range burst {
		c.Send(map[string]any{"id": 100 + i, "event": "join", "args": []any{"12"}}) // not waiting for the ack
	}
	want := `[{"post":"12","readers":{"n1":13}}]`
	var seen []string
	for range 13 { // at most one per join
		got := observer.NextNamed(t, "fleet:update")
		if jsonEqual(got, want) {
			return
		}
		seen = append(seen, got)
	}
	t.Fatalf("no fleet:update %s; got %v", want, seen)
}

// waitFleetUpdate reads c's "fleet:update" events, in order, until one is
// want: each change pushes one, so a few earlier ones may come first.
func waitFleetUpdate(t *testing.T, c *nodetest.Client, want string) {
	t.Helper()
	var seen []string
	for range 5 {
		got := c.NextNamed(t, "fleet:update")
		if jsonEqual(got, want) {
			return
		}
		seen = append(seen, got)
	}
	t.Fatalf("no fleet:update %s; got %v", want, seen)
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

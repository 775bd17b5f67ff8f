package redisadapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// ackAs makes c answer every acked event with {"who": name, "got": first argument}.
func ackAs(c *siotest.Client, name string) {
	c.AckWith(func(e siotest.Event) []any {
		var got json.RawMessage = json.RawMessage("null")
		if len(e.Args) > 0 {
			got = e.Args[0]
		}
		return []any{map[string]any{"who": name, "got": got}}
	})
}

// whoAcked returns the "who" of each ack, and checks each carries got.
func whoAcked(t *testing.T, acks []json.RawMessage, got string) []string {
	t.Helper()
	var who []string
	for _, raw := range acks {
		var a struct {
			Who string          `json:"who"`
			Got json.RawMessage `json:"got"`
		}
		require.NoError(t, json.Unmarshal(raw, &a), "ack %s", raw)
		require.JSONEq(t, got, string(a.Got), "ack %s", raw)
		who = append(who, a.Who)
	}
	return who
}

// emitWithAckSuite is EmitWithAck with every selector across two nodes, in
// one mode (suite runs it in each).
func emitWithAckSuite(t *testing.T, e env) {
	a, b := e.nodes(t, nil)
	a1, b1, b2, b3 := a.client(t, "poll"), b.client(t, "poll"), b.client(t, "poll", "muted"), b.client(t)
	for name, cl := range map[string]*siotest.Client{"a1": a1, "b1": b1, "b2": b2, "b3": b3} {
		ackAs(cl, name)
	}
	for _, tc := range []struct {
		name string
		op   interface { // a BroadcastOperator, or the Namespace
			Timeout(time.Duration) redisadapter.BroadcastOperator
		}
		want []string
	}{
		{"Room", a.a.To("poll"), []string{"a1", "b1", "b2"}},
		{"Except", a.a.To("poll").Except("muted"), []string{"a1", "b1"}},
		{"Namespace", a.a.Of("/"), []string{"a1", "b1", "b2", "b3"}},
		{"TwoRooms", b.a.To("poll", "muted", "nowhere"), []string{"a1", "b1", "b2"}},
		{"Local", b.a.To("poll").Local(), []string{"b1", "b2"}},
		{"NoOne", a.a.To("nowhere"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			acks, err := tc.op.Timeout(wait).EmitWithAck(bg(t), "question", tc.name)
			require.NoError(t, err)
			require.ElementsMatch(t, tc.want, whoAcked(t, acks, fmt.Sprintf("%q", tc.name)))
			require.Less(t, time.Since(start), wait/2, "returned once every ack arrived")
		})
	}
}

// A client that does not answer, one that disconnects instead, and a node
// that never reports its count: the call returns at its timeout with the
// acks that arrived and says what is missing.
func TestEmitWithAckTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, b := startNodes(t, c, nil)
	a1, b1 := a.client(t, "poll"), b.client(t, "poll")
	ackAs(a1, "a1")
	ackAs(b1, "b1")
	silent := b.client(t, "poll") // never answers
	_ = silent

	const timeout = time.Second
	start := time.Now()
	acks, err := a.a.To("poll").Timeout(timeout).EmitWithAck(bg(t), "question", 1)
	took := time.Since(start)
	require.ErrorIs(t, err, redisadapter.ErrTimeout)
	require.Contains(t, err.Error(), "1 of 3 known clients did not answer, and 0 of 1 other nodes")
	require.ElementsMatch(t, []string{"a1", "b1"}, whoAcked(t, acks, "1"))
	require.GreaterOrEqual(t, took, timeout)
	require.Less(t, took, timeout+time.Second)

	t.Run("ClientDisconnectsMidway", func(t *testing.T) {
		leaving := b.client(t, "poll2")
		leaving.AckWith(func(siotest.Event) []any {
			go leaving.Close() // leaves instead of answering
			return nil
		})
		ackAs(a.client(t, "poll2"), "stays")
		start := time.Now()
		acks, err := a.a.To("poll2").Timeout(timeout).EmitWithAck(bg(t), "question", 2)
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.Contains(t, err.Error(), "1 of 2 known clients did not answer")
		require.Equal(t, []string{"stays"}, whoAcked(t, acks, "2"))
		require.Less(t, time.Since(start), timeout+time.Second)
	})

	t.Run("NodeNeverReports", func(t *testing.T) {
		requestSpy(t, c, a, 3) // counted as a node; never answers
		start := time.Now()
		acks, err := a.a.To("poll").Except(silent.ID()).Timeout(timeout).EmitWithAck(bg(t), "question", 3)
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.Contains(t, err.Error(), "0 of 2 known clients did not answer, and 1 of 2 other nodes did not report")
		require.ElementsMatch(t, []string{"a1", "b1"}, whoAcked(t, acks, "3"))
		require.Less(t, time.Since(start), timeout+time.Second)

		// The caller's context ends first: the same, named as the caller's.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel2()
		_, err = a.a.To("poll").Timeout(wait).EmitWithAck(ctx2, "question", 4)
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.Contains(t, err.Error(), "the caller's deadline")
	})
}

// A flood of acks and counts for a pending request keeps at most the
// allowance for acks that overtake their count; for an unknown or
// finished request id it is ignored.
func TestEmitWithAckFloodIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, b := startNodes(t, c, nil)
	ackAs(b.client(t, "poll"), "b1")

	requests := requestSpy(t, c, a, 3) // counted as a node; never reports

	type result struct {
		acks []json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		acks, err := a.a.To("poll").Timeout(3*time.Second).EmitWithAck(context.Background(), "question", 1)
		done <- result{acks, err}
	}()
	var req struct {
		UID       string `msgpack:"uid"`
		RequestID string `msgpack:"requestId"`
		Type      int    `msgpack:"type"`
		Opts      struct {
			Flags map[string]int `msgpack:"flags"`
		} `msgpack:"opts"`
	}
	select {
	case msg := <-requests:
		require.NoError(t, msgpack.Unmarshal([]byte(msg), &req), "the request is msgpack, as Node's")
	case <-time.After(wait):
		t.Fatal("no request seen")
	}
	require.Equal(t, 7, req.Type)
	require.Equal(t, 3000, req.Opts.Flags["timeout"], "Node's timeout flag")
	flood := rawClient(t, c)
	channel := defaultNames.responses("/", req.UID)
	publish := func(requestID string, msg map[string]any) {
		msg["requestId"] = requestID
		payload, err := msgpack.Marshal(msg)
		require.NoError(t, err)
		require.NoError(t, flood.Do(bg(t), flood.B().Publish().Channel(channel).Message(string(payload)).Build()).Error())
	}
	// The spy never reports its count: acks beyond b's one client are kept
	// up to the allowance (1024), the rest dropped. Negative counts too.
	for i := range 5000 {
		publish(req.RequestID, map[string]any{"type": 9, "packet": map[string]any{"who": "flood", "got": i}})
	}
	for range 100 {
		publish(req.RequestID, map[string]any{"type": 8, "clientCount": -5})
		publish("unknown", map[string]any{"type": 8, "clientCount": 1})
		publish("unknown", map[string]any{"type": 9, "packet": 1})
	}
	r := <-done
	require.ErrorIs(t, r.err, redisadapter.ErrTimeout)
	require.Contains(t, r.err.Error(), "1 of 2 other nodes did not report")
	require.Len(t, r.acks, 1024+1, "b's one counted client, plus the allowance for acks ahead of their count (flood or b1's)")

	// Finished: a flood for its id finds no request, and the node still
	// answers.
	for i := range 2000 {
		publish(req.RequestID, map[string]any{"type": 9, "packet": i})
	}
	acks, err := a.a.To("poll").Local().EmitWithAck(bg(t), "question", 2)
	require.NoError(t, err)
	require.Empty(t, acks, "a has no client in poll")
}

// Many EmitWithAck calls at once, from this node and from another, to one
// connection in two namespaces (go-socket.io's ack counter is per
// connection): every call gets its own client's answer, under -race.
func TestEmitWithAckConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	opts := &redisadapter.Options{Namespaces: []string{"/", "/chat"}}
	a, b := startNodes(t, c, opts)
	cl := a.client(t)
	require.NoError(t, cl.Join("/chat"))
	cl.AckWith(func(e siotest.Event) []any { return []any{e.Args[0]} }) // echoes the argument
	eventually(t, "client in /chat", func() bool { return a.srv.RoomLen("/chat", cl.ID()) == 1 })

	const callers, calls = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, 3*callers*calls)
	for g := range callers {
		for _, op := range []struct {
			name string
			op   redisadapter.BroadcastOperator
		}{
			{"local", a.a.To(cl.ID()).Local()},
			{"chat", a.a.Of("/chat").To(cl.ID())},
			{"remote", b.a.To(cl.ID())},
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range calls {
					arg := fmt.Sprintf("%s-%d-%d", op.name, g, i)
					acks, err := op.op.Timeout(wait).EmitWithAck(context.Background(), "echo", arg)
					switch {
					case err != nil:
						errs <- fmt.Errorf("%s: %w", arg, err)
					case len(acks) != 1 || string(acks[0]) != fmt.Sprintf("%q", arg):
						errs <- fmt.Errorf("%s: acks %s", arg, acks)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	require.NoError(t, errors.Join(all...))
}

// The operator's errors come before anything is sent.
func TestEmitWithAckErrors(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, &redisadapter.Options{MaxMessageSize: 1024})
	cl := n.client(t, "r")
	ackAs(cl, "cl")
	_, err := n.a.Of("/nope").EmitWithAck(bg(t), "x")
	require.ErrorIs(t, err, redisadapter.ErrUnknownNamespace)
	// Too large: not even the local client gets it. (Another node is
	// needed for the request to be encoded at all.)
	startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, &redisadapter.Options{MaxMessageSize: 1024})
	_, err = n.a.To("r").EmitWithAck(bg(t), "big", string(make([]byte, 2048)))
	require.ErrorIs(t, err, redisadapter.ErrMessageTooLarge)
	acks, err := n.a.To("r").EmitWithAck(bg(t), "small", 1)
	require.NoError(t, err)
	require.Equal(t, []string{"cl"}, whoAcked(t, acks, "1"))
	ev, err := cl.NextAny(wait)
	require.NoError(t, err)
	require.Equal(t, "small", ev.Name, "the large event never reached the client")
	n.stop()
	_, err = n.a.To("r").EmitWithAck(bg(t), "x")
	require.ErrorIs(t, err, redisadapter.ErrClosed)
}

// go-socket.io keeps an ack callback until its client answers: a client
// that never answers is asked for at most 64 acknowledgements, then gets
// the events without the request, and a call counts it as not answering.
func TestEmitWithAckBoundsWhatAClientOwes(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	silent := a.client(t, "poll")
	var mu sync.Mutex
	asked := 0
	silent.AckWith(func(siotest.Event) []any {
		mu.Lock()
		asked++
		mu.Unlock()
		return nil // never answers
	})
	const calls = 70
	for i := range calls {
		_, err := a.a.To("poll").Local().Timeout(time.Millisecond).EmitWithAck(bg(t), "question", i)
		require.ErrorIs(t, err, redisadapter.ErrTimeout)
		require.Contains(t, err.Error(), "1 of 1 known clients did not answer")
	}
	for i := range calls {
		e, err := silent.Next("question", wait)
		require.NoError(t, err)
		require.JSONEq(t, fmt.Sprint(i), string(e.Args[0]), "every event delivered, in order")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 64, asked, "asked for 64 acknowledgements, then no more")
}

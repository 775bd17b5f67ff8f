package redisadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// A flood of answers to one request cannot grow memory: the request keeps
// as many answers as there are other nodes, and ignores the rest.
func TestAnswerFloodIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, _ := startNodes(t, c, nil) // the second node has no handler: it never answers

	// Read the request as anyone on the Redis can, and answer it 10,000 times.
	requests := requestSpy(t, c, a, 3)

	type result struct {
		acks []json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		acks, err := a.a.Of("/").ServerSideEmit(ctx, "unanswered")
		done <- result{acks, err}
	}()
	var req struct {
		UID       string `json:"uid"`
		RequestID string `json:"requestId"`
	}
	select {
	case msg := <-requests:
		require.NoError(t, json.Unmarshal([]byte(msg), &req))
	case <-time.After(wait):
		t.Fatal("no request seen")
	}
	flood := rawClient(t, c)
	for i := range 10000 {
		answer := fmt.Sprintf(`{"type":6,"requestId":%q,"data":%d}`, req.RequestID, i)
		require.NoError(t, flood.Do(bg(t), flood.B().Publish().Channel(defaultNames.responses("/", req.UID)).Message(answer).Build()).Error())
	}
	r := <-done
	// Three subscribers (two nodes and the spy): two answers awaited, the
	// first two of the flood kept, the rest ignored.
	require.NoError(t, r.err)
	require.Equal(t, []json.RawMessage{json.RawMessage("0"), json.RawMessage("1")}, r.acks)
}

// requestSpy subscribes to the root namespace's request channel as any
// client of the Redis can, until the test ends, and returns the requests
// it reads (the first 16; later ones are dropped). Nodes count it as a
// server, one that never answers: it returns once a counts servers.
func requestSpy(t *testing.T, c redisadapter.Connector, a *node, servers int) <-chan string {
	t.Helper()
	requests := spyRequests(t, c)
	eventually(t, "spy subscribed", func() bool {
		n, _ := a.a.Of("/").ServerCount(bg(t))
		return n == servers
	})
	return requests
}

// spyRequests is requestSpy without the wait: it returns at once.
func spyRequests(t *testing.T, c redisadapter.Connector) <-chan string {
	t.Helper()
	return spyOn(t, c, func(b rueidis.Builder) rueidis.Completed {
		return b.Subscribe().Channel(defaultNames.requests("/")).Build()
	})
}

// spyOn subscribes with the command subscribe builds on a client of its
// own, until the test ends, and returns the messages read (the latest
// dropped while 64 wait).
func spyOn(t *testing.T, c redisadapter.Connector, subscribe func(rueidis.Builder) rueidis.Completed) <-chan string {
	t.Helper()
	spy := rawClient(t, c)
	messages := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = spy.Receive(ctx, subscribe(spy.B()), func(m rueidis.PubSubMessage) {
			select {
			case messages <- m.Message:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	return messages
}

// Close under load returns within its context and leaves nothing running
// (TestMain's goleak check covers the adapter's goroutines and the socket
// drains).
func TestCloseUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, b := startNodes(t, c, nil)
	for range 20 {
		b.client(t, "r")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var senders sync.WaitGroup
	for range 8 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for ctx.Err() == nil {
				_ = a.a.To("r").Emit(ctx, "load", strings.Repeat("x", 512))
			}
		}()
	}
	eventually(t, "b is busy delivering", func() bool { return b.a.Stats().Received > 1000 })
	start := time.Now()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), wait)
	defer closeCancel()
	require.NoError(t, b.a.Close(closeCtx), "Close finished within its context")
	took := time.Since(start)
	cancel()
	senders.Wait()
	t.Logf("Close under load took %v", took.Round(time.Millisecond))
	// Only catches a Close that outlives its context: how long it takes
	// is not this test's to judge.
	require.Less(t, took, 2*wait)
	require.ErrorIs(t, b.a.To("r").Emit(bg(t), "x"), redisadapter.ErrClosed)
}

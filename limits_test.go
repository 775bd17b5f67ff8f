package redisadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	c := redisadapter.Standalone{URL: srv.URL()}
	a, _ := startNodes(t, c, nil) // the second node has no handler: it never answers

	// Read the request as anyone on the Redis can, and answer it 10,000 times.
	spy := rawClient(t, c)
	requests := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = spy.Receive(ctx, spy.B().Subscribe().Channel("socket.io-request#/#").Build(), func(m rueidis.PubSubMessage) {
			select {
			case requests <- m.Message:
			default:
			}
		})
	}()
	eventually(t, "spy subscribed", func() bool {
		n, _ := a.a.ServerCount(bg(t))
		return n == 3
	})

	type result struct {
		acks []json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		acks, err := a.a.ServerSideEmit(ctx, "/", "unanswered")
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
		require.NoError(t, flood.Do(bg(t), flood.B().Publish().Channel("socket.io-response#/#"+req.UID+"#").Message(answer).Build()).Error())
	}
	r := <-done
	// Three subscribers (two nodes and the spy): two answers awaited, the
	// first two of the flood kept, the rest ignored.
	require.NoError(t, r.err)
	require.Equal(t, []json.RawMessage{json.RawMessage("0"), json.RawMessage("1")}, r.acks)
}

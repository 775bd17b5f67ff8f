package redisadapter

import (
	"context"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/redistest"
)

// The last answer finishes a request before its requester takes it out of
// the pending map; Close must not finish it a second time (it used to
// close its channel twice and panic).
func TestCloseAfterLastAnswer(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := New(ctx, socketio.NewServer(nil), Standalone{Addr: srv.Addr()}, nil)
	require.NoError(t, err)

	p := &pendingRequest{typ: typeServerSideEmit, expected: 1, done: make(chan struct{})}
	require.NoError(t, a.req.pending.add("r1", p))
	a.handleResponse(inbound{
		PubSubMessage: rueidis.PubSubMessage{Channel: "socket.io-response#/#", Message: `{"type":6,"requestId":"r1","data":"ok"}`},
		ns:            a.namespaces["/"],
	})
	select {
	case <-p.done:
	default:
		t.Fatal("the only expected answer did not finish the request")
	}
	require.NotPanics(t, func() { require.NoError(t, a.Close(ctx)) })
	require.NoError(t, p.err, "a request that got every answer is not failed by Close")
	require.Len(t, p.acks, 1)
}

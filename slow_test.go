package redisadapter_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// A client that stops reading fills its own queue and loses events past it;
// the node keeps reading Redis and the other sockets keep getting theirs.
func TestSlowSocketDoesNotStallOthers(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a := startNode(t, c, nil)
	b := startNode(t, c, &redisadapter.Options{SocketQueue: 1 << 20}) // 8 of the events below

	// A websocket that completes the handshake and never reads again.
	wsURL := "ws" + strings.TrimPrefix(b.url, "http") + "/socket.io/?EIO=3&transport=websocket"
	stalled, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{})
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { stalled.Close() })
	healthy := b.client(t)
	eventually(t, "both sockets connected on b", func() bool {
		n, _ := b.a.Of("/").Local().CountSockets(bg(t))
		return n == 2
	})

	// Far more than the stalled connection's socket buffers hold.
	big := strings.Repeat("x", 128<<10)
	const burst = 400
	for i := range burst {
		require.NoError(t, a.a.Of("/").Emit(bg(t), "big", i, big))
	}
	// The healthy client gets events again as soon as it has read its own
	// backlog (which may have overflowed too: it is slower than a burst).
	eventually(t, "a marker reaches the healthy client", func() bool {
		require.NoError(t, a.a.Of("/").Emit(bg(t), "marker"))
		for {
			e, err := healthy.NextAny(200 * time.Millisecond)
			if err != nil {
				return false
			}
			if e.Name == "marker" {
				return true
			}
		}
	})
	eventually(t, "the stalled socket's overflow counted", func() bool { return b.a.Stats().SlowSocketDrops > 0 })
	st := b.a.Stats()
	require.Zero(t, st.QueueFull, "the receive queue never filled: Redis was read at full speed")
	t.Logf("b: %+v", st)
}

package redisadapter_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/googollee/go-socket.io/engineio/transport"
	"github.com/googollee/go-socket.io/engineio/transport/websocket"
	"github.com/googollee/go-socket.io/parser"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
)

// frame is one websocket message as a client reads it.
type frame struct {
	binary bool
	data   string
}

// TestWebsocketFramesAsGoSocketIO checks that the websocket connection
// ClientLimits.Transports serves writes what go-socket.io's own writes,
// frame for frame: a client's session (connect, ping, a text event acked,
// a binary event acked with its attachment, a server-side emit) read by a
// raw websocket client from a server with go-socket.io's transport and
// from one with ClientLimits's.
func TestWebsocketFramesAsGoSocketIO(t *testing.T) {
	session := func(ts []transport.Transport) []frame {
		srv := socketio.NewServer(&engineio.Options{Transports: ts})
		srv.OnConnect("/", func(s socketio.Conn) error { return nil })
		srv.OnEvent("/", "echo", func(s socketio.Conn, text string) string {
			s.Emit("pushed", text, 7)
			return "re:" + text
		})
		srv.OnEvent("/", "bin", func(s socketio.Conn, b parser.Buffer) (string, *parser.Buffer) {
			return "bytes", &parser.Buffer{Data: append([]byte("re:"), b.Data...)}
		})
		go func() { _ = srv.Serve() }()
		t.Cleanup(func() { _ = srv.Close() })
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)

		ws, _, err := gorilla.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/socket.io/?EIO=3&transport=websocket", nil)
		require.NoError(t, err)
		defer ws.Close()
		var got []frame
		read := func(n int) {
			for range n {
				require.NoError(t, ws.SetReadDeadline(time.Now().Add(5*time.Second)))
				typ, b, err := ws.ReadMessage()
				require.NoError(t, err)
				got = append(got, frame{binary: typ == gorilla.BinaryMessage, data: string(b)})
			}
		}
		send := func(typ int, s string) { require.NoError(t, ws.WriteMessage(typ, []byte(s))) }
		read(2) // the open packet, whose sid differs, and the namespace's connect
		got = got[1:]
		send(gorilla.TextMessage, "2")
		read(1)
		send(gorilla.TextMessage, `421["echo","hi"]`)
		read(2) // the ack and the pushed event, in the order go-socket.io writes them
		send(gorilla.TextMessage, `451-2["bin",{"_placeholder":true,"num":0}]`)
		send(gorilla.BinaryMessage, "\x04abc")
		read(2) // the binary ack and its attachment
		return got
	}
	theirs := session([]transport.Transport{websocket.Default})
	ours := session(redisadapter.ClientLimits{}.Transports(websocket.Default))
	require.Len(t, theirs, 6)
	require.ElementsMatch(t, theirs[2:4], ours[2:4], "the ack and the pushed event (two goroutines write them)")
	theirs[2], theirs[3], ours[2], ours[3] = frame{}, frame{}, frame{}, frame{}
	require.Equal(t, theirs, ours)
	require.Contains(t, theirs, frame{binary: true, data: "\x04re:abc"}, "the attachment is a binary frame")
}

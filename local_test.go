package redisadapter

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio/session"
	"github.com/googollee/go-socket.io/parser"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/siotest"
)

// frames records what go-socket.io's encoder writes, one frame each.
type frames struct{ got []*bytes.Buffer }

type frame struct{ *bytes.Buffer }

func (frame) Close() error { return nil }

func (f *frames) NextWriter(session.FrameType) (io.WriteCloser, error) {
	b := new(bytes.Buffer)
	f.got = append(f.got, b)
	return frame{b}, nil
}

// The packet deliver writes itself must be the one go-socket.io's Emit
// would have written (Emit adds a newline after the JSON).
func TestEventPacketMatchesGoSocketIO(t *testing.T) {
	type post struct {
		ID   int    `json:"id"`
		Text string `json:"text,omitempty"`
	}
	for _, tc := range []struct {
		nsp, event string
		args       []any
	}{
		{"/", "m", nil},
		{"/", "comment", []any{post{ID: 1, Text: "<b>hi</b> & \u2028"}, nil, 2.5, true}},
		{"/chat", "m", []any{map[string]any{"z": 1, "a": []int{1, 2}}, "x"}},
		{"/chat", `"quoted"`, []any{[]string{}}},
	} {
		var f frames
		data := append([]any{tc.event}, tc.args...)
		h := parser.Header{Type: parser.Event}
		if tc.nsp != "/" {
			h.Namespace = tc.nsp
		}
		require.NoError(t, parser.NewEncoder(&f).Encode(h, data))
		require.Len(t, f.got, 1)
		want := bytes.TrimSuffix(f.got[0].Bytes(), []byte("\n"))
		require.Equal(t, string(want), string(eventPacket(tc.nsp, tc.event, emittable(tc.args))))
	}
	require.Nil(t, eventPacket("/", "m", emittable([]any{&parser.Buffer{Data: []byte{1}}})), "binary arguments are left to Emit")
}

// go-socket.io's conns must expose their engine.io connection, or every
// broadcast silently falls back to Emit.
func TestConnsAreFrameWriters(t *testing.T) {
	srv := socketio.NewServer(nil)
	conns := make(chan socketio.Conn, 1)
	srv.OnConnect("/", func(c socketio.Conn) error { conns <- c; return nil })
	go srv.Serve()
	hs := httptest.NewServer(srv)
	defer func() { hs.CloseClientConnections(); hs.Close(); srv.Close() }()
	cl, err := siotest.Dial(hs.URL)
	require.NoError(t, err)
	defer cl.Close()
	select {
	case c := <-conns:
		fw, ok := c.(frameWriter)
		require.True(t, ok, "%T does not expose NextWriter", c)
		writeFrame(fw, eventPacket("/", "direct", emittable([]any{"a", 1})), nil)
		e, err := cl.Next("direct", 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, `"a" 1`, string(bytes.Join([][]byte{e.Args[0], e.Args[1]}, []byte(" "))))
	case <-time.After(5 * time.Second):
		t.Fatal("no connect")
	}
}

// A socket's queue counts bytes: it takes events up to Options.SocketQueue,
// drops past it, and gives the budget back as the drain writes them, so a
// socket that keeps up never starts dropping.
func TestSocketQueueBoundsBytes(t *testing.T) {
	a := &Adapter{closing: make(chan struct{}), opts: Options{SocketQueue: 1000}}
	block := make(chan struct{})
	w := &gatedFrames{gate: block, entered: make(chan struct{}, 1)}
	s := &localSocket{conn: w}
	ev := outEvent{event: "m", packet: bytes.Repeat([]byte("x"), 100)} // 180 bytes counted
	for range 10 {
		a.enqueue(s, ev)
	}
	// The drain took the first event and waits in NextWriter: it still
	// counts, so five events in all fit in 1000 bytes.
	<-w.entered
	require.EqualValues(t, 5, a.stats.slowSocket.Load(), "1 being written + 4 queued fit in 1000 bytes; 5 dropped")
	close(block)
	a.wg.Wait()
	require.Zero(t, s.queued, "the budget is given back as events are written")
	require.Len(t, w.got, 5)
	for range 10 {
		a.enqueue(s, ev)
		a.wg.Wait()
	}
	require.EqualValues(t, 5, a.stats.slowSocket.Load(), "a socket that keeps up drops nothing")
	require.Len(t, w.got, 15)
	a.enqueue(s, outEvent{event: "m", packet: bytes.Repeat([]byte("x"), 5000)})
	a.wg.Wait()
	require.Len(t, w.got, 16, "an empty queue takes an event larger than the bound")
}

// gatedFrames is a socket whose first frame write waits for gate.
type gatedFrames struct {
	socketio.Conn
	frames
	gate    chan struct{}
	entered chan struct{}
	once    bool
}

func (g *gatedFrames) NextWriter(ft session.FrameType) (io.WriteCloser, error) {
	if !g.once {
		g.once = true
		g.entered <- struct{}{}
		<-g.gate
	}
	return g.frames.NextWriter(ft)
}

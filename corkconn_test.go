package redisadapter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	socketio "github.com/googollee/go-socket.io"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// tapListener hands the server connections that count their writes and
// can hold them back or fail them.
type tapListener struct {
	net.Listener
	accepted chan *tapConn
}

func tap(ln net.Listener) net.Listener {
	return &tapListener{Listener: ln, accepted: make(chan *tapConn, 16)}
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &tapConn{Conn: c}
	select {
	case l.accepted <- tc:
	default: // a test takes the connections it knows of
	}
	return tc, nil
}

type tapConn struct {
	net.Conn
	writes  atomic.Int64
	blocked atomic.Int64 // writes held at the gate
	mu      sync.Mutex
	gate    chan struct{} // nil: writes go through; else they wait for it to close
	fail    error         // not nil: writes fail with it
	written []byte        // what was written since take
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.mu.Lock()
	gate, fail := c.gate, c.fail
	c.written = append(c.written, p...)
	c.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	if gate != nil {
		c.blocked.Add(1)
		<-gate
		c.blocked.Add(-1)
	}
	return c.Conn.Write(p)
}

// hold makes writes wait until the returned release is called.
func (c *tapConn) hold() (release func()) {
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.gate = nil
		c.mu.Unlock()
		close(gate)
	}
}

// take returns what was written since the last take.
func (c *tapConn) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.written
	c.written = nil
	return b
}

// echoNode is a node on a tapped listener with an "echo" event acked with
// its argument.
func echoNode(t *testing.T) (*node, *tapListener) {
	t.Helper()
	srv := redistest.Start(t)
	var ln *tapListener
	n := startNodeOn(t, redisadapter.Standalone{Addr: srv.Addr()}, nil, func(s *socketio.Server, _ *redisadapter.Adapter) {
		s.OnEvent("/", "echo", func(_ socketio.Conn, v string) string { return v })
	}, func(l net.Listener) net.Listener { ln = tap(l).(*tapListener); return ln })
	return n, ln
}

// Events that wait in a socket's queue leave in one write on a websocket
// of ClientLimits.Transports, whole and in order, with the acks
// go-socket.io writes meanwhile from its own goroutines between them.
func TestQueuedFramesLeaveInOneWrite(t *testing.T) {
	n, ln := echoNode(t)
	cl := n.client(t, "room")
	conn := <-ln.accepted

	// The first event's write waits at the gate; the rest wait in the queue.
	release := conn.hold()
	const events, acks = 500, 20
	require.NoError(t, n.a.Of("/").Local().Emit(bg(t), "m", 0))
	eventually(t, "a write held", func() bool { return conn.blocked.Load() > 0 })
	writes0 := conn.writes.Load()
	ackErrs := make(chan error, 1)
	go func() {
		for i := range acks {
			ack, err := cl.Call(wait, "echo", strconv.Itoa(i))
			if err == nil && (len(ack) != 1 || string(ack[0]) != strconv.Quote(strconv.Itoa(i))) {
				err = fmt.Errorf("ack %d: %s", i, ack)
			}
			if err != nil {
				ackErrs <- err
				return
			}
		}
		ackErrs <- nil
	}()
	for i := 1; i < events; i++ {
		require.NoError(t, n.a.Of("/").Local().Emit(bg(t), "m", i))
	}
	release()

	for i := range events {
		e, err := cl.Next("m", wait)
		require.NoError(t, err, "event %d", i)
		require.Equal(t, []json.RawMessage{json.RawMessage(strconv.Itoa(i))}, e.Args)
	}
	require.NoError(t, <-ackErrs)
	// Without corking: one write per event and per ack. With it: the held
	// write, the run of queued events, and the acks, each alone at worst.
	writes := conn.writes.Load() - writes0
	t.Logf("%d events and %d acks in %d writes", events, acks, writes)
	require.Less(t, writes, int64(events/4))
}

// A write that fails after the frames were buffered closes the connection:
// go-socket.io disconnects the socket and the client sees the close, as
// soon as the failure, not a ping timeout later.
func TestFailedFlushClosesTheSocket(t *testing.T) {
	n, ln := echoNode(t)
	cl := n.client(t, "room")
	conn := <-ln.accepted

	conn.mu.Lock()
	conn.fail = errors.New("the network is gone")
	conn.mu.Unlock()
	for i := range 10 {
		require.NoError(t, n.a.Of("/").Local().Emit(bg(t), "m", i))
	}
	closedWithin(t, cl)
	eventually(t, "the socket disconnected", func() bool {
		c, err := n.a.Of("/").Local().CountSockets(bg(t))
		require.NoError(t, err)
		return c == 0
	})
}

// Long-polling connections are not corked and keep working: queued events
// and acks reach a socket.io-client 2.5.0 client, in order.
func TestPollingClientWithClientLimits(t *testing.T) {
	n, _ := echoNode(t)
	cl := nodetest.DialPolling(t, n.url)
	require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, cl.Call(t, "join", "room"))
	const events = 30
	for i := range events {
		require.NoError(t, n.a.To("room").Emit(bg(t), "m", i))
		if i%10 == 0 {
			require.Equal(t, []json.RawMessage{json.RawMessage(`"x"`)}, cl.Call(t, "echo", "x"))
		}
	}
	for i := range events {
		ev, args := cl.Next(t)
		require.Equal(t, "m", ev)
		require.JSONEq(t, fmt.Sprintf("[%d]", i), args)
	}
	// go-socket.io holds a pending long-poll until its ping timeout; closing
	// the session ends it now (see TestNpmClientAgainstGoNodes).
	require.NoError(t, n.a.Of("/").DisconnectSockets(bg(t), true))
	ev, _ := cl.Next(t)
	require.Equal(t, "disconnected", ev)
}

// The bytes a run writes at once are those of its frames written one by
// one, on both sides of each length encoding and of the size past which
// gorilla/websocket splits a message (4082 bytes here: net/http's
// 4096-byte buffer less the frame header).
func TestRunFramesAreGorillaFrames(t *testing.T) {
	n, ln := echoNode(t)
	cl := n.client(t, "room")
	conn := <-ln.accepted
	const overhead = len(`4` + `42["m",""]`)
	for _, size := range []int{1, 124 - overhead, 125 - overhead, 126 - overhead, 4082 - overhead, 4083 - overhead, 70000} {
		arg := strings.Repeat("x", size)
		receive := func(count int) {
			for range count {
				e, err := cl.Next("m", wait)
				require.NoError(t, err)
				require.Equal(t, []json.RawMessage{json.RawMessage(strconv.Quote(arg))}, e.Args)
			}
		}
		conn.take()
		require.NoError(t, n.a.Of("/").Local().Emit(bg(t), "m", arg))
		receive(1)
		alone := conn.take()

		// One held, then a run of three.
		release := conn.hold()
		for range 4 {
			require.NoError(t, n.a.Of("/").Local().Emit(bg(t), "m", arg))
		}
		release()
		receive(4)
		require.Equal(t, bytes.Repeat(alone, 4), conn.take(), "argument of %d bytes", size)
	}
}

// Two namespaces on one connection drain their queues at once, each run
// holding the connection's write lock in turn, with acked emits (written
// by go-socket.io's writer, which waits for that lock) among the events:
// every event arrives, in order within its namespace (an acked emit is
// answered before the next event is emitted), and every ack.
func TestRunsOfTwoNamespacesOnOneConnection(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, &redisadapter.Options{Namespaces: []string{"/", "/chat"}})
	cl := n.client(t)
	require.NoError(t, cl.Join("/chat"))
	cl.AckWith(func(e siotest.Event) []any { return []any{e.Args[0]} })
	eventually(t, "client in /chat", func() bool { return n.srv.RoomLen("/chat", cl.ID()) == 1 })

	const events = 300
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, nsp := range []string{"/", "/chat"} {
		wg.Go(func() {
			op := n.a.Of(nsp).To(cl.ID()).Local()
			for i := range events {
				if i%50 == 49 {
					acks, err := op.Timeout(wait).EmitWithAck(bg(t), "echo", i)
					if err == nil && (len(acks) != 1 || string(acks[0]) != strconv.Itoa(i)) {
						err = fmt.Errorf("%s: ack %d: %s", nsp, i, acks)
					}
					if err != nil {
						errs <- err
						return
					}
					continue
				}
				if err := op.Emit(bg(t), "m", i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	next := map[string]int{"": 0, "/chat": 0}
	for range 2 * events {
		e, err := cl.NextAny(wait)
		require.NoError(t, err, "received so far: %v", next)
		i, err := strconv.Atoi(string(e.Args[0]))
		require.NoError(t, err)
		require.Equal(t, next[e.Namespace], i, "namespace %q", e.Namespace)
		next[e.Namespace]++
	}
	wg.Wait()
	close(errs)
	require.NoError(t, <-errs)
}

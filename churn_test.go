package redisadapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// A conn seen after it disconnected (by a broadcast or request that
// selected it just before, or by SetData from a handler racing the
// disconnect) is not tracked again: it used to come back as a ghost that
// requests reported for ever.
func TestNoGhostAfterDisconnect(t *testing.T) {
	srv := redistest.Start(t)
	n := startNode(t, redisadapter.Standalone{Addr: srv.Addr()}, nil)
	cl := n.client(t)
	var conn socketio.Conn
	n.srv.ForEach("/", cl.ID(), func(c socketio.Conn) { conn = c })
	require.NotNil(t, conn)
	eventually(t, "the socket is tracked", func() bool { return n.a.Stats().Sockets == 1 }) // the client sees CONNECT before the handler runs

	require.NoError(t, cl.Close())
	eventually(t, "the socket is no longer tracked", func() bool { return n.a.Stats().Sockets == 0 })
	require.NoError(t, n.a.SetData(conn, map[string]int{"late": 1}))
	require.Zero(t, n.a.Stats().Sockets)
	sockets, err := n.a.Of("/").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Empty(t, sockets)
}

// syncBuffer is a bytes.Buffer for a logger written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A user who registers OnDisconnect on the server replaces the adapter's
// hook. Requests stop reporting a socket the moment it disconnects, the
// sweep stops tracking it, and the mistake is logged once.
func TestServerOnDisconnectReplacesTheAdapters(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncBuffer
	opts := &redisadapter.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	userSaw := make(chan string, 4)
	n := startNodeWith(t, redisadapter.Standalone{Addr: srv.Addr()}, opts, func(srv *socketio.Server, _ *redisadapter.Adapter) {
		srv.OnDisconnect("/", func(c socketio.Conn, _ string) { userSaw <- c.ID() }) // the mistake
	})
	for range 2 {
		cl := n.client(t)
		eventually(t, "the socket is tracked", func() bool { return n.a.Stats().Sockets == 1 }) // the client sees CONNECT before the handler runs
		require.NoError(t, cl.Close())
		select {
		case id := <-userSaw:
			require.Equal(t, cl.ID(), id)
		case <-time.After(wait):
			t.Fatal("the server's disconnect handler did not run")
		}
		sockets, err := n.a.Of("/").FetchSockets(bg(t))
		require.NoError(t, err)
		require.Empty(t, sockets, "a disconnected socket is never reported")
		count, err := n.a.Of("/").CountSockets(bg(t))
		require.NoError(t, err)
		require.Zero(t, count)
		eventually(t, "the sweep stops tracking the socket", func() bool { return n.a.Stats().Sockets == 0 })
	}
	require.Equal(t, 1, strings.Count(logs.String(), "register disconnect handlers with a.Of(nsp).OnDisconnect"), logs.String())
}

// A user who registers OnConnect on the server replaces the adapter's
// hook: a socket is tracked once a broadcast finds it in a room, and the
// sweep logs the mistake.
func TestServerOnConnectReplacesTheAdapters(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncBuffer
	opts := &redisadapter.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n := startNodeWith(t, redisadapter.Standalone{Addr: srv.Addr()}, opts, func(srv *socketio.Server, _ *redisadapter.Adapter) {
		srv.OnConnect("/", func(socketio.Conn) error { return nil }) // the mistake
	})
	cl := n.client(t, "r")
	// The adapter did not see the connect: the broadcast's room lookup
	// tracks the socket (unless a sweep did it first).
	require.NoError(t, n.a.To("r").Emit(bg(t), "hello"))
	expect(t, cl, "hello")
	require.Equal(t, 1, n.a.Stats().Sockets, "the broadcast's selection tracks it")
	sockets, err := n.a.Of("/").FetchSockets(bg(t))
	require.NoError(t, err)
	require.Len(t, sockets, 1)
	eventually(t, "the sweep reports the mistake", func() bool {
		return strings.Contains(logs.String(), "sockets connected without the adapter seeing it")
	})
}

// The same mistake in an app that never looks a room up (it only
// broadcasts namespace-wide, or does nothing): the sweep finds the sockets
// go-socket.io counts and the adapter does not, reports it within seconds
// of the first connection, and namespace-wide broadcasts reach them.
func TestServerOnConnectReportedWithoutRoomLookups(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncBuffer
	opts := &redisadapter.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n := startNodeWith(t, redisadapter.Standalone{Addr: srv.Addr()}, opts, func(srv *socketio.Server, _ *redisadapter.Adapter) {
		srv.OnConnect("/", func(socketio.Conn) error { return nil }) // the mistake
	})
	cl := n.client(t)
	connected := time.Now()
	deadline := time.After(3*sweepEvery + time.Second)
	for !strings.Contains(logs.String(), "sockets connected without the adapter seeing it") {
		select {
		case <-deadline:
			t.Fatalf("not reported %v after the first connection; log:\n%s", time.Since(connected), logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("reported %v after the first connection", time.Since(connected).Round(time.Millisecond))
	require.Equal(t, 1, n.a.Stats().Sockets, "the sweep tracks the socket")
	require.NoError(t, n.a.Of("/").Emit(bg(t), "all", 1))
	expect(t, cl, "all", "1")
}

// sweepEvery is the adapter's sweep interval (sweepInterval).
const sweepEvery = time.Second

// churnDuration is how long TestChurn churns: 5 s by default (CI), or
// REDISADAPTER_CHURN (a Go duration) for a longer run on demand:
//
//	REDISADAPTER_CHURN=60s go test -race -run TestChurn -v .
func churnDuration(t *testing.T) time.Duration {
	v := os.Getenv("REDISADAPTER_CHURN")
	if v == "" {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, "REDISADAPTER_CHURN")
	return d
}

// stayer is a client that stays connected through the churn, in room
// "stay", and records the numbered events each node broadcasts.
type stayer struct {
	cl   *siotest.Client
	node int

	mu   sync.Mutex
	next [3]int // per sending node: the number of the next event expected
	errs []string
}

func (s *stayer) read(done <-chan struct{}) {
	for {
		select {
		case e := <-s.cl.Events:
			var from, seq int
			if len(e.Args) != 2 {
				continue
			}
			_, err1 := fmt.Sscan(string(e.Args[0]), &from)
			_, err2 := fmt.Sscan(string(e.Args[1]), &seq)
			s.mu.Lock()
			if err1 != nil || err2 != nil || from < 0 || from >= len(s.next) {
				s.errs = append(s.errs, fmt.Sprintf("%s: unexpected arguments %s", e.Name, e.Args))
				s.mu.Unlock()
				continue
			}
			if seq != s.next[from] && len(s.errs) < 5 {
				s.errs = append(s.errs, fmt.Sprintf("%s from node %d: got #%d, expected #%d", e.Name, from, seq, s.next[from]))
			}
			s.next[from] = seq + 1
			s.mu.Unlock()
		case <-done:
			return
		}
	}
}

// Three nodes; sockets connect, join and leave posts and disconnect (by
// themselves, or remotely from another node) hundreds of times a second,
// while every node broadcasts to a room and to the namespace and asks the
// fleet for its sockets. Afterwards every node tracks exactly its live
// connections, the fleet-wide counts are what is connected, the clients
// that stayed got every event in order, and goroutines and heap are back to
// where they were.
func TestChurn(t *testing.T) {
	dur := churnDuration(t)
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	// With the adapter's hooks in place, the sweep never finds a socket
	// whose disconnect or connect the adapter missed.
	var logs syncBuffer
	opts := &redisadapter.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	defer func() {
		// Either sweep warning: a disconnect or a connect the adapter missed.
		require.NotContains(t, logs.String(), "without the adapter seeing it")
	}()
	fleet := []*node{startNode(t, c, opts), startNode(t, c, opts), startNode(t, c, opts)}
	const staysPerNode = 3
	var stayers []*stayer
	done := make(chan struct{})
	var readers sync.WaitGroup
	defer func() { close(done); readers.Wait() }()
	for i, n := range fleet {
		for range staysPerNode {
			s := &stayer{cl: n.client(t, "stay"), node: i}
			stayers = append(stayers, s)
			readers.Go(func() { s.read(done) })
		}
	}
	var connects, remoteDisconnects, requests atomic.Int64
	var sent [3]atomic.Int64 // per node: events broadcast so far, the number of the next one
	churn := func(dur time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		defer cancel()
		var load sync.WaitGroup
		defer load.Wait()
		// failed reports an error unless the run is ending (a request cut short
		// by the end of the run is not a failure).
		failed := func(what string, err error) {
			if err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		// Churners keep a few sockets each, replacing the oldest with a new one
		// that joins a post (and sometimes leaves it again).
		for w := range 4 {
			load.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 7))
				var open []*siotest.Client
				defer func() {
					for _, cl := range open {
						cl.Close()
					}
				}()
				for ctx.Err() == nil {
					cl, err := siotest.Dial(fleet[r.IntN(len(fleet))].url)
					if err != nil {
						failed("dial", err)
						return
					}
					connects.Add(1)
					open = append(open, cl)
					post := fmt.Sprintf("post:%d", r.IntN(20))
					for _, ev := range []string{"join", "leave"}[:1+r.IntN(2)] {
						if _, err := cl.Call(wait, ev, post); err != nil {
							select {
							case <-cl.Closed(): // disconnected remotely meanwhile
							default:
								failed(ev, err)
							}
							break
						}
					}
					if len(open) > 6 {
						open[0].Close()
						open = open[1:]
					}
				}
			})
		}
		// Remote operations: a random node disconnects a socket of a post and
		// makes a post's sockets join another room.
		load.Go(func() {
			r := rand.New(rand.NewPCG(99, 7))
			for ctx.Err() == nil {
				n := fleet[r.IntN(len(fleet))]
				post := fmt.Sprintf("post:%d", r.IntN(20))
				sockets, err := n.a.To(post).FetchSockets(ctx)
				failed("FetchSockets", err)
				if len(sockets) > 0 {
					failed("DisconnectSockets", n.a.To(sockets[0].ID).DisconnectSockets(ctx, true))
					remoteDisconnects.Add(1)
				}
				failed("SocketsJoin", n.a.To(post).SocketsJoin(ctx, "extra"))
			}
		})
		// SetData from outside the sockets' handlers (an application
		// setting a user's data after a lookup): it takes conns from a
		// post's room, and some have left by the time it reaches them.
		for _, n := range fleet {
			load.Go(func() {
				r := rand.New(rand.NewPCG(uint64(len(n.url)), 11))
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for ctx.Err() == nil {
					var conns []socketio.Conn
					n.srv.ForEach("/", fmt.Sprintf("post:%d", r.IntN(20)), func(c socketio.Conn) { conns = append(conns, c) })
					<-tick.C // the lookup
					for _, c := range conns {
						failed("SetData", n.a.SetData(c, map[string]int{"seen": r.IntN(100)}))
					}
				}
			})
		}
		// Requests from every node: the stayers are always there, in full.
		for _, n := range fleet {
			load.Go(func() {
				for ctx.Err() == nil {
					count, err := n.a.To("stay").CountSockets(ctx)
					failed("CountSockets", err)
					if err == nil && count != len(stayers) {
						t.Errorf("room stay counted %d sockets across the fleet during churn, want %d", count, len(stayers))
					}
					sockets, err := n.a.Of("/").FetchSockets(ctx)
					failed("FetchSockets", err)
					if err == nil {
						requireStayersIn(t, stayers, sockets)
					}
					requests.Add(2)
				}
			})
		}
		// Broadcasts from every node, numbered, to the room and to the
		// namespace in turn, 500 a second each.
		for i, n := range fleet {
			load.Go(func() {
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					seq := sent[i].Load()
					var op interface { // a BroadcastOperator, or the Namespace
						Emit(context.Context, string, ...any) error
					} = n.a.To("stay")
					if seq%2 == 1 {
						op = n.a.Of("/")
					}
					if err := op.Emit(context.Background(), "n", i, seq); err != nil {
						t.Errorf("emit: %v", err)
						return
					}
					sent[i].Store(seq + 1)
				}
			})
		}
	}
	// The same load briefly first, so that the baseline includes what
	// grows once (maps, pools, connections opened on first use).
	churn(300 * time.Millisecond)
	for _, n := range fleet {
		eventually(t, "the warm-up's sockets gone", func() bool { return n.srv.Count() == staysPerNode })
	}
	goroutines, heap := settle()
	connects.Store(0)
	remoteDisconnects.Store(0)
	requests.Store(0)
	churn(dur)
	t.Logf("%v: %d connects (%.0f/s), %d remote disconnects, %d requests, broadcasts %d/%d/%d",
		dur, connects.Load(), float64(connects.Load())/dur.Seconds(), remoteDisconnects.Load(), requests.Load(),
		sent[0].Load(), sent[1].Load(), sent[2].Load())

	for _, s := range stayers {
		eventually(t, "every broadcast reaches every stayer", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i := range fleet {
				if int64(s.next[i]) != sent[i].Load() {
					return false
				}
			}
			return true
		})
		s.mu.Lock()
		require.Empty(t, s.errs, "events out of order or missing")
		s.mu.Unlock()
	}
	// Every node settles before any fleet-wide count: a node counts the
	// others' sockets as they are at that moment, and a remote disconnect
	// may still be closing on a node this loop has not reached yet.
	for _, n := range fleet {
		eventually(t, "each node tracks exactly its live connections", func() bool {
			return n.a.Stats().Sockets == staysPerNode && n.srv.Count() == staysPerNode
		})
	}
	for i, n := range fleet {
		local, err := n.a.Of("/").Local().FetchSockets(bg(t))
		require.NoError(t, err)
		var want, got []string
		for _, s := range stayers {
			if s.node == i {
				want = append(want, s.cl.ID())
			}
		}
		for _, s := range local {
			got = append(got, s.ID)
		}
		require.ElementsMatch(t, want, got)
		count, err := n.a.Of("/").CountSockets(bg(t))
		require.NoError(t, err)
		require.Equal(t, len(stayers), count, "fleet-wide count after the churn")
		sockets, err := n.a.Of("/").FetchSockets(bg(t))
		require.NoError(t, err)
		require.Len(t, sockets, len(stayers))
		requireStayersIn(t, stayers, sockets)
		st := n.a.Stats()
		require.Zero(t, st.QueueFull+st.SlowSocketDrops+st.Malformed, "node %d: %+v", i, st)
	}
	// Each node's rueidis client may have opened its second pipelined
	// connection (two goroutines) after the warm-up: a leak per socket
	// would show as hundreds.
	deadline := time.Now().Add(wait)
	for g, _ := settle(); g > goroutines+2*len(fleet); g, _ = settle() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the churn:\n%s", g, goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, after := settle()
	t.Logf("heap: %d KiB before, %d KiB after", heap>>10, after>>10)
	require.Less(t, after, heap+4<<20, "heap after the churn, in bytes")
}

// requireStayersIn fails t unless every stayer is among sockets.
func requireStayersIn(t *testing.T, stayers []*stayer, sockets []redisadapter.RemoteSocket) {
	t.Helper()
	ids := make(map[string]bool, len(sockets))
	for _, s := range sockets {
		ids[s.ID] = true
	}
	for _, s := range stayers {
		if !ids[s.cl.ID()] {
			t.Errorf("socket %s is connected but FetchSockets did not report it", s.cl.ID())
		}
	}
}

// settle collects garbage and returns the number of goroutines and the
// live heap.
func settle() (goroutines int, heap uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

// Close while answers arrive, many times over: no request may be finished
// twice (Close used to close a channel the last answer had closed: a
// panic), every caller returns, with its answers or ErrClosed.
func TestCloseWhileAnswersArrive(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	for range 2 {
		startNodeWith(t, c, nil, func(_ *socketio.Server, a *redisadapter.Adapter) {
			a.Of("/").OnServerSideEmit("ping", func([]json.RawMessage) any { return "pong" })
		})
	}
	for range 100 {
		a, err := redisadapter.New(bg(t), socketio.NewServer(nil), c, nil)
		require.NoError(t, err)
		var callers sync.WaitGroup
		var answered atomic.Int64
		for range 4 {
			callers.Go(func() {
				for {
					acks, err := a.Of("/").ServerSideEmit(context.Background(), "ping")
					if errors.Is(err, redisadapter.ErrClosed) {
						return
					}
					if err != nil || len(acks) != 2 {
						t.Errorf("ServerSideEmit: %d acks, %v", len(acks), err)
						return
					}
					answered.Add(1)
				}
			})
		}
		eventually(t, "answers flow", func() bool { return answered.Load() > 0 })
		require.NoError(t, a.Close(bg(t)))
		callers.Wait()
	}
}

package redisadapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// Topologies shared by the tests that do not break them: started by the
// first test that needs one, stopped when the package's tests end (TestMain
// runs the cleanups). Failover tests start their own.
var (
	sharedCleanups []func()
	clusterOnce    sync.Once
	cluster        *redistest.ClusterSet
	sentinelOnce   sync.Once
	sentinel       *redistest.SentinelSet
)

// packageTB is the first user's TB, with cleanups deferred to TestMain.
type packageTB struct{ testing.TB }

func (packageTB) Cleanup(f func()) { sharedCleanups = append(sharedCleanups, f) }

func sharedCluster(t testing.TB) *redistest.ClusterSet {
	t.Helper()
	clusterOnce.Do(func() { cluster = redistest.StartCluster(packageTB{t}) })
	if cluster == nil {
		t.Fatal("the shared cluster did not start")
	}
	return cluster
}

func sharedSentinel(t testing.TB) *redistest.SentinelSet {
	t.Helper()
	sentinelOnce.Do(func() { sentinel = redistest.StartSentinel(packageTB{t}) })
	if sentinel == nil {
		t.Fatal("the shared sentinel set did not start")
	}
	return sentinel
}

// stopShared stops the shared topologies, last started first.
func stopShared() {
	for i := len(sharedCleanups) - 1; i >= 0; i-- {
		sharedCleanups[i]()
	}
}

// wait is how long a test waits for something that must happen.
const wait = 5 * time.Second

// node is one go-socket.io server with its adapter, on a loopback port.
type node struct {
	srv  *socketio.Server
	a    *redisadapter.Adapter
	url  string
	stop func() // closes the adapter and the server; also run by Cleanup
}

// startNode starts a server with the events the tests drive:
// "join" and "leave" (a room; acked "ok") in every served namespace.
func startNode(t testing.TB, c redisadapter.Connector, opts *redisadapter.Options) *node {
	t.Helper()
	return startNodeWith(t, c, opts, nil)
}

// startNodeWith is startNode with setup run on the server and adapter
// before the server serves (go-socket.io stores handlers without a lock).
func startNodeWith(t testing.TB, c redisadapter.Connector, opts *redisadapter.Options, setup func(*socketio.Server, *redisadapter.Adapter)) *node {
	t.Helper()
	return startNodeOn(t, c, opts, setup, nil)
}

// startNodeOn is startNodeWith serving on what wrap makes of the loopback
// listener (nil: the listener itself).
func startNodeOn(t testing.TB, c redisadapter.Connector, opts *redisadapter.Options, setup func(*socketio.Server, *redisadapter.Adapter), wrap func(net.Listener) net.Listener) *node {
	t.Helper()
	// The transports the README recommends: every test and benchmark
	// serves clients the way users are told to.
	srv := socketio.NewServer(&engineio.Options{
		SessionIDGenerator: redisadapter.SessionIDGenerator{},
		Transports:         redisadapter.ClientLimits{}.Transports(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	a, err := redisadapter.New(ctx, srv, c, opts)
	require.NoError(t, err)
	if setup != nil {
		setup(srv, a)
	}
	nsps := []string{"/"}
	if opts != nil && len(opts.Namespaces) > 0 {
		nsps = opts.Namespaces
	}
	for _, nsp := range nsps {
		srv.OnEvent(nsp, "join", func(s socketio.Conn, room string) string { s.Join(room); return "ok" })
		srv.OnEvent(nsp, "leave", func(s socketio.Conn, room string) string { s.Leave(room); return "ok" })
	}
	go srv.Serve()
	hs := httptest.NewUnstartedServer(srv)
	if wrap != nil {
		hs.Listener = wrap(hs.Listener)
	}
	hs.Start()
	stop := sync.OnceFunc(func() {
		hs.CloseClientConnections()
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		// A test that broke Redis leaves failed publishes for Close to report.
		if err := a.Close(ctx); !errors.Is(err, redisadapter.ErrPublish) {
			require.NoError(t, err)
		}
		srv.Close()
	})
	t.Cleanup(stop)
	return &node{srv: srv, a: a, url: hs.URL, stop: stop}
}

// client connects a test client to n and joins rooms.
func (n *node) client(t testing.TB, rooms ...string) *siotest.Client {
	t.Helper()
	return dialRooms(t, n.url, rooms...)
}

// dialRooms connects a test client to the server at url (a Go node, the
// built-in adapter's or a Node.js one: all ack "join" with "ok"), closed
// when the test ends, and joins rooms.
func dialRooms(t testing.TB, url string, rooms ...string) *siotest.Client {
	t.Helper()
	c, err := siotest.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	for _, r := range rooms {
		ack, err := c.Call(wait, "join", r)
		require.NoError(t, err)
		require.Equal(t, []json.RawMessage{json.RawMessage(`"ok"`)}, ack)
	}
	return c
}

// expect asserts that the next event c receives is name with the given
// JSON arguments.
func expect(t *testing.T, c *siotest.Client, name string, args ...string) {
	t.Helper()
	e, err := c.NextAny(wait)
	require.NoError(t, err, "waiting for %q", name)
	require.Equal(t, name, e.Name, "event args %s", e.Args)
	got := make([]string, len(e.Args))
	for i, a := range e.Args {
		got[i] = string(a)
	}
	if len(args) == 0 {
		args = []string{}
	}
	require.Equal(t, args, got)
}

// eventually polls cond every 10 ms until it holds, failing t past wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	await.True(t, wait, 10*time.Millisecond, what, cond)
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

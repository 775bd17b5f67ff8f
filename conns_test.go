package redisadapter_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/faultproxy"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// TestConnectionsMatchClientList counts the connections one node opens in
// each mode and topology as the servers see them (CLIENT LIST on every
// Redis server and sentinel, on servers of the test's own), and holds
// Stats to the same numbers. Its log is the table of
// connections in docs/operations.md ("Connections to Redis"): go test -run
// TestConnectionsMatchClientList -v .
func TestConnectionsMatchClientList(t *testing.T) {
	standalone := redistest.Start(t)
	sentinels := redistest.StartSentinel(t)
	cluster := redistest.StartCluster(t)
	sentinelServers := append([]*redistest.Server{sentinels.Master, sentinels.Replica}, sentinels.Sentinels...)
	sentinel := redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: sentinels.Addrs()}
	clustered := redisadapter.Cluster{Addrs: cluster.Addrs()}
	sharded := redisadapter.Cluster{Addrs: cluster.Addrs(), Sharded: true}
	masters := 3 // StartCluster: three masters, three replicas

	cases := []struct {
		mode, topology string
		c              redisadapter.Connector
		servers        []*redistest.Server
		rooms          int // room channels' connections once a socket is in rooms of every master
		streams        int
		sentinels      int
	}{
		{"classic", "standalone", redisadapter.Standalone{Addr: standalone.Addr()}, []*redistest.Server{standalone}, 0, 0, 0},
		{"streams", "standalone", redisadapter.Streams{Connector: redisadapter.Standalone{Addr: standalone.Addr()}}, []*redistest.Server{standalone}, 0, 1, 0},
		{"classic", "Sentinel", sentinel, sentinelServers, 0, 0, 1},
		{"streams", "Sentinel", redisadapter.Streams{Connector: sentinel}, sentinelServers, 0, 1, 1},
		{"classic", "Cluster", clustered, cluster.Nodes, 0, 0, 0},
		{"sharded", "Cluster", sharded, cluster.Nodes, masters, 0, 0},
		{"streams", "Cluster", redisadapter.Streams{Connector: clustered}, cluster.Nodes, 0, 1, 0},
		{"streams (sharded pub/sub)", "Cluster", redisadapter.Streams{Connector: sharded}, cluster.Nodes, 0, 1, 0},
	}
	t.Logf("GOMAXPROCS %d", runtime.GOMAXPROCS(0))
	t.Logf("| mode | topology | pipelined | room channels | stream readers | sentinel | total | subscriptions |")
	for _, tc := range cases {
		t.Run(tc.mode+" on "+tc.topology, func(t *testing.T) {
			ctx := bg(t)
			awaitClients(t, tc.servers, 0) // the previous case's node is gone
			n := startNode(t, tc.c, nil)
			// Sockets in rooms whose channels hash to every master (sharded),
			// and traffic on every path: broadcasts, a request.
			rooms := make([]string, 16)
			for i := range rooms {
				rooms[i] = "room-" + strconv.Itoa(i)
			}
			n.client(t, rooms...)
			// rueidis opens its pipelined connections on first use, picking
			// one at random for a command with a slot: enough publishes open
			// them all.
			for i := range 64 {
				require.NoError(t, n.a.To(rooms[i%len(rooms)]).Emit(ctx, "m", i))
			}
			_, err := n.a.Of("/").ServerCount(ctx)
			require.NoError(t, err)

			var s redisadapter.Stats
			var seen int
			await.Check(t, 10*time.Second, 50*time.Millisecond, "Stats to count what CLIENT LIST lists", func(ctx context.Context) error {
				s = n.a.Stats()
				if s.RoomConns != tc.rooms || s.StreamReaderConns != tc.streams || s.SentinelConns != tc.sentinels {
					return fmt.Errorf("stats %+v", s)
				}
				total := s.PipelinedConns + s.RoomConns + s.StreamReaderConns + s.SentinelConns
				var err error
				if seen, err = countClients(ctx, tc.servers); err != nil {
					return err
				}
				if seen != total {
					return fmt.Errorf("CLIENT LIST lists %d connections, Stats %d (%+v)", seen, total, s)
				}
				return nil
			})
			if tc.streams > 0 {
				require.Equal(t, 1, s.StreamsRead)
			}
			t.Logf("| %s | %s | %d | %d | %d | %d | %d | %d channels, %d patterns, %d shard channels, %d streams |", tc.mode, tc.topology,
				s.PipelinedConns, s.RoomConns, s.StreamReaderConns, s.SentinelConns, seen,
				s.SubscribedChannels, s.SubscribedPatterns, s.SubscribedShardChannels, s.StreamsRead)
			n.stop()
		})
	}

	t.Run("Emitter on standalone", func(t *testing.T) {
		ctx := bg(t)
		servers := []*redistest.Server{standalone}
		awaitClients(t, servers, 0)
		e, err := redisadapter.NewEmitter(ctx, redisadapter.Standalone{Addr: standalone.Addr()}, nil)
		require.NoError(t, err)
		defer e.Close(ctx)
		require.NoError(t, e.Emit(ctx, "m"))
		_, err = e.FetchSockets(ctx) // subscribes to its answers
		require.NoError(t, err)
		require.NoError(t, e.Flush(ctx))
		var s redisadapter.EmitterStats
		await.Check(t, 10*time.Second, 50*time.Millisecond, "Stats to count what CLIENT LIST lists", func(ctx context.Context) error {
			s = e.Stats()
			seen, err := countClients(ctx, servers)
			if err != nil {
				return err
			}
			if seen != s.PipelinedConns {
				return fmt.Errorf("CLIENT LIST lists %d connections, Stats %+v", seen, s)
			}
			return nil
		})
		require.Equal(t, 2, s.SubscribedChannels) // classic: the shared response channel and its own
		require.GreaterOrEqual(t, s.Published, uint64(1))
		t.Logf("| Emitter | standalone | %d | 0 | 0 | 0 | %d | %d channels |", s.PipelinedConns, s.PipelinedConns, s.SubscribedChannels)
	})
}

// awaitClients waits until the servers list want connections of clients.
func awaitClients(t *testing.T, servers []*redistest.Server, want int) {
	t.Helper()
	await.Check(t, 10*time.Second, 50*time.Millisecond, "connections to close", func(ctx context.Context) error {
		n, err := countClients(ctx, servers)
		if err == nil && n != want {
			err = fmt.Errorf("%d connections, want %d", n, want)
		}
		return err
	})
}

// countClients counts the clients the servers list, but for their own
// links: replication (flags S, M), sentinels (named sentinel-*), and the
// connection that asks.
func countClients(ctx context.Context, servers []*redistest.Server) (int, error) {
	n := 0
	for _, s := range servers {
		list, err := clientList(ctx, s.Addr())
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			if f["cmd"] == "client|list" || strings.ContainsAny(f["flags"], "SM") || strings.HasPrefix(f["name"], "sentinel-") {
				continue
			}
			n++
		}
	}
	return n, nil
}

// clientList sends CLIENT LIST on a connection of its own, closed after.
func clientList(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "*2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n"); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(head, "$") {
		return "", fmt.Errorf("CLIENT LIST on %s: %q", addr, head)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return "", err
	}
	body := make([]byte, size)
	_, err = io.ReadFull(r, body)
	return string(body), err
}

// A node reading two streams, one of whose readers' connection goes
// silent (a dropped flow): that reader gives it up within the bound and
// blocks on another, and the other reader's connection, which answers,
// is left open (a late reader closes only the connections that read
// nothing since they wrote: rueidis does not say which one it took).
func TestSilentReaderConnectionAlone(t *testing.T) {
	srv := redistest.Start(t)
	px := faultproxy.Start(t, srv.Addr())
	// "/" and "/chat" are read from socket.io-2 and socket.io-1.
	c := redisadapter.Streams{Connector: redisadapter.Standalone{Addr: px.Addr()}, Count: 3}
	n := startNode(t, c, &redisadapter.Options{Namespaces: []string{"/", "/chat"}})
	raw := rawClient(t, redisadapter.Standalone{Addr: srv.Addr()})
	var readers []string
	eventually(t, "the node's two readers blocked in XREAD", func() bool {
		readers = blockedInXread(t, raw)
		return len(readers) == 2
	})
	before := n.a.Stats().ProbeFailures
	require.True(t, px.BlackholeConn(readers[0], faultproxy.Both))
	silenced := time.Now()
	await.True(t, wait, 10*time.Millisecond, "the silent connection given up", func() bool {
		return n.a.Stats().ProbeFailures > before && px.Silent() == 0
	})
	took := time.Since(silenced)
	t.Logf("the silent reader connection given up %v after it went silent", took.Round(time.Millisecond))
	require.Less(t, took, 3*time.Second)
	eventually(t, "both readers blocked in XREAD, the other one on its own connection still", func() bool {
		blocked := blockedInXread(t, raw)
		return len(blocked) == 2 && slices.Contains(blocked, readers[1]) && !slices.Contains(blocked, readers[0])
	})
	require.Equal(t, before+1, n.a.Stats().ProbeFailures, "one probe missed: the silent reader's")
}

package redisadapter_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// Classic with RoomSubscriptions: no pattern, one channel per room held
// (socket-id rooms included), dropped when the last local socket leaves,
// and a node reads none of the broadcasts to rooms it does not hold.
func TestRoomSubscriptionsChannels(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr(), RoomSubscriptions: true}
	e := env{features: classicRoomsMode, names: names{key: uniqueKey(t)}, c: c}
	a, b := e.nodes(t, nil)
	raw := rawClient(t, c)
	numpat, err := raw.Do(bg(t), raw.B().PubsubNumpat().Build()).AsInt64()
	require.NoError(t, err)
	require.Zero(t, numpat, "no PSUBSCRIBE")

	ac := a.client(t, "a-room")
	bc := b.client(t, "b-room")
	// A broadcast to one socket id goes on the id room's channel, which
	// the socket's node subscribes to when it connects.
	channelSubscribers(t, c, e.room("/", bc.ID()), 1)
	channelSubscribers(t, c, e.room("/", "b-room"), 1)
	channelSubscribers(t, c, e.room("/", "a-room"), 1)
	require.NoError(t, a.a.To(bc.ID()).Emit(bg(t), "to-you", 1))
	expect(t, bc, "to-you", "1")

	// b reads nothing of a's broadcasts to a's room (and a skips its own
	// by their head, after reading them).
	require.NoError(t, b.a.Flush(bg(t)))
	before := b.a.Stats().Received
	for i := range 20 {
		require.NoError(t, a.a.To("a-room").Emit(bg(t), "mine", i))
	}
	for i := range 20 {
		expect(t, ac, "mine", strconv.Itoa(i))
	}
	require.NoError(t, a.a.Of("/").Emit(bg(t), "all"))
	expect(t, bc, "all")
	// The namespace-wide broadcast, not a's 20 to its room (a margin for
	// anything else a node may read, a delivery probe say).
	read := b.a.Stats().Received - before
	require.GreaterOrEqual(t, read, uint64(1))
	require.Less(t, read, uint64(5), "b read a's broadcasts to a room it does not hold")

	// The last local socket leaves: the channel goes.
	conn := socketConn(t, b, bc.ID())
	require.NoError(t, b.a.Leave(bg(t), conn, "b-room"))
	channelSubscribers(t, c, e.room("/", "b-room"), 0)
	bc.Close()
	channelSubscribers(t, c, e.room("/", bc.ID()), 0)
}

// Cluster.RoomSubscriptions is for classic mode only.
func TestRoomSubscriptionsWithShardedIsAnError(t *testing.T) {
	_, err := redisadapter.New(bg(t), nil, redisadapter.Cluster{Addrs: []string{"127.0.0.1:1"}, Sharded: true, RoomSubscriptions: true}, nil)
	require.ErrorIs(t, err, redisadapter.ErrConfig)
}

// A node whose one socket is in 50,000 rooms: Join subscribes them in
// pipelined batches on one connection, broadcasts reach each, and after
// Redis kills the connection every channel is subscribed again.
// REDISADAPTER_ROOMS overrides the number.
func TestRoomSubscriptionsManyRooms(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	n := 50000
	if s := os.Getenv("REDISADAPTER_ROOMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr(), RoomSubscriptions: true}
	opts := &redisadapter.Options{Key: uniqueKey(t)}
	a, b := startNode(t, c, opts), startNode(t, c, opts)
	cl := b.client(t)
	conn := socketConn(t, b, cl.ID())
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = "room-" + strconv.Itoa(i)
	}
	// Generous bounds: under -race, beside other tests, this is ten
	// times slower than alone.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := rawClient(t, c)
	redisMem := func() int64 {
		info, err := raw.Do(bg(t), raw.B().Info().Section("memory").Build()).ToString()
		require.NoError(t, err)
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	mem0, heap0 := redisMem(), ms.HeapAlloc
	start := time.Now()
	require.NoError(t, b.a.Join(ctx, conn, rooms...))
	took := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("Join of %d rooms confirmed in %v; Redis memory +%d B per room channel; Go heap (go-socket.io's rooms too) +%d B per room",
		n, took, (redisMem()-mem0)/int64(n), (int64(ms.HeapAlloc)-int64(heap0))/int64(n))
	for _, i := range []int{0, n / 2, n - 1} {
		require.NoError(t, a.a.To(rooms[i]).Emit(bg(t), "r", i))
		expect(t, cl, "r", strconv.Itoa(i))
	}

	// Redis drops the pub/sub connections: every room comes back.
	require.NoError(t, raw.Do(bg(t), raw.B().ClientKill().TypePubsub().Build()).Error())
	start = time.Now()
	await.True(t, time.Minute, 10*time.Millisecond, "every room channel subscribed again", func() bool {
		return b.a.Stats().Resubscribes >= uint64(n)
	})
	t.Logf("%d room channels subscribed again in %v", n, time.Since(start))
	for _, i := range []int{1, n - 2} {
		require.NoError(t, a.a.To(rooms[i]).Emit(bg(t), "again", i))
		expect(t, cl, "again", strconv.Itoa(i))
	}
}

// With Sentinel, the room channels follow the master through a failover:
// after a graceful SENTINEL FAILOVER, each node's room channels are
// subscribed on the new master and broadcasts to the room flow again.
func TestRoomSubscriptionsSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	c := redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs(), RoomSubscriptions: true}
	opts := &redisadapter.Options{Key: uniqueKey(t), RequestTimeout: time.Second}
	a, b := startNodes(t, c, opts)
	clients := []*siotest.Client{a.client(t, "r"), b.client(t, "r")}
	resumed(t, a, clients, time.Now(), wait)

	old, err := set.CurrentMaster(bg(t))
	require.NoError(t, err)
	sn := set.Sentinels[0]
	out, err := sn.Exec(bg(t), "redis-cli", "-p", fmt.Sprint(sn.Port), "SENTINEL", "FAILOVER", redistest.MasterName)
	require.NoError(t, err, out)
	elected := newMaster(t, set, old)
	d := resumed(t, a, clients, elected, 2*wait)
	t.Logf("broadcasts resumed %v after the failover", d.Round(time.Millisecond))
	// Both nodes hold "r" on the new master, not on the demoted one.
	ch := names{key: opts.Key}.room("/", "r")
	eventually(t, "room channel subscribed on the new master", func() bool {
		out, err := set.Replica.Exec(bg(t), "redis-cli", "-p", fmt.Sprint(set.Replica.Port), "PUBSUB", "NUMSUB", ch)
		return err == nil && strings.HasSuffix(strings.TrimSpace(out), "2")
	})
}

// Join while Redis is away: the socket joins, Join fails with
// ErrUnavailable at its caller's deadline, and once Redis is back the
// room's channel is subscribed with no further call.
func TestJoinWhileRedisIsAway(t *testing.T) {
	srv := redistest.Start(t)
	c := redisadapter.Standalone{Addr: srv.Addr(), RoomSubscriptions: true}
	opts := &redisadapter.Options{Key: uniqueKey(t), RequestTimeout: time.Second}
	a, b := startNodes(t, c, opts)
	cl := b.client(t)
	conn := socketConn(t, b, cl.ID())

	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := b.a.Join(ctx, conn, "late")
	require.ErrorIs(t, err, redisadapter.ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 1, b.srv.RoomLen("/", "late"), "the socket joined anyway")

	srv.Restart(t)
	channelSubscribers(t, c, names{key: opts.Key}.room("/", "late"), 1)
	eventually(t, "a's broadcast reaches the socket", func() bool {
		_ = a.a.To("late").Emit(bg(t), "hello")
		select {
		case e := <-cl.Events:
			return e.Name == "hello"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

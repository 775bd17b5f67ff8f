package redisadapter_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
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
	require.Equal(t, before+1, b.a.Stats().Received, "b read only the namespace-wide broadcast")

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
	start := time.Now()
	require.NoError(t, b.a.Join(bg(t), conn, rooms...))
	t.Logf("Join of %d rooms confirmed in %v", n, time.Since(start))
	for _, i := range []int{0, n / 2, n - 1} {
		require.NoError(t, a.a.To(rooms[i]).Emit(bg(t), "r", i))
		expect(t, cl, "r", strconv.Itoa(i))
	}

	// Redis drops the pub/sub connections: every room comes back.
	raw := rawClient(t, c)
	require.NoError(t, raw.Do(bg(t), raw.B().ClientKill().TypePubsub().Build()).Error())
	start = time.Now()
	eventually(t, "every room channel subscribed again", func() bool {
		return b.a.Stats().Resubscribes >= uint64(n)
	})
	t.Logf("%d room channels subscribed again in %v", n, time.Since(start))
	for _, i := range []int{1, n - 2} {
		require.NoError(t, a.a.To(rooms[i]).Emit(bg(t), "again", i))
		expect(t, cl, "again", strconv.Itoa(i))
	}
}

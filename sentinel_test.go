package redisadapter

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// A node of a Sentinel deployment keeps its sentinel connection when a
// failed probe closes the others (closed while rueidis's refresh waits on
// a frozen master, it would leave rueidis watching no sentinel); the
// sentinels, asked past one that does not answer, name the master the node
// publishes to, so the role check with them passes; closing the sentinel
// connection on purpose makes rueidis dial another.
func TestSentinelConnectionAndMaster(t *testing.T) {
	set := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := New(ctx, socketio.NewServer(nil), Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close(context.Background())) }()

	require.Equal(t, 1, a.conns.counts().sentinels)
	require.Positive(t, a.conns.closeAll())
	require.Equal(t, 1, a.conns.counts().sentinels, "closeAll spares the sentinel connection")

	opt := *a.conns.sentinel
	opt.InitAddress = append([]string{fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))}, opt.InitAddress...)
	master, err := sentinelMaster(ctx, &opt, time.Second)
	require.NoError(t, err, "a sentinel down: the next one is asked")
	require.Equal(t, set.Master.Addr(), master)
	require.Contains(t, a.client.Nodes(), master)
	// The role check, the sentinels asked too: the connections closed
	// above come back first.
	await.Check(t, 10*time.Second, 50*time.Millisecond, "the role check passes", func(ctx context.Context) error {
		return a.probes[0].checkRole(ctx, true)
	})

	require.Equal(t, 1, a.conns.closeSentinels())
	await.Check(t, 10*time.Second, 50*time.Millisecond, "rueidis dials a sentinel again", func(context.Context) error {
		if n := a.conns.counts().sentinels; n != 1 {
			return fmt.Errorf("%d sentinel connections", n)
		}
		return nil
	})
}

// A connection the client holds to another server than the master (one
// rueidis was dialing to the old master when it moved) is closed by
// leaveOldMaster once the sentinels name the master the client sends to,
// at once: the dial wakes followMaster. The master's connections and the
// sentinel's are kept.
func TestLeaveOldMaster(t *testing.T) {
	set := redistest.StartSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The prober is kept asleep: the test calls leaveOldMaster itself.
	a, err := New(ctx, socketio.NewServer(nil), Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}, &Options{ProbeInterval: time.Hour})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close(context.Background())) }()
	require.Zero(t, a.leaveOldMaster(ctx), "every connection is to the master")
	before := a.conns.counts()

	stale, err := a.conns.dial(ctx, set.Replica.Addr(), &net.Dialer{}, nil)
	require.NoError(t, err)
	defer stale.Close()
	await.True(t, 10*time.Second, 5*time.Millisecond, "followMaster closes the connection to the other server", func() bool {
		return !a.conns.elsewhere(set.Master.Addr())
	})
	require.Equal(t, before, a.conns.counts(), "the master's and the sentinel's connections are kept")
	_, err = stale.Write([]byte("PING\r\n"))
	require.ErrorIs(t, err, net.ErrClosed)
}

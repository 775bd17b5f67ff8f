//go:build linux

package redisadapter

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
)

// synDropper listens on loopback without ever accepting, its accept queue
// full: the kernel drops every SYN sent to it, as a network that drops
// everything does, and a dial to it waits.
func synDropper(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), "listener")
	t.Cleanup(func() { f.Close() })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0)) // a queue of one
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	filler, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { filler.Close() })
	return addr
}

// A dial that waits for a network that drops everything is abandoned by
// closeAll, so that the renewal after a failed probe sends a fresh SYN
// rather than wait for the kernel to resend its own (1 s, 3 s, 7 s...)
// once the network is back.
func TestCloseAllAbandonsADialInProgress(t *testing.T) {
	addr := synDropper(t)
	c := &connCounter{}
	dialed := make(chan error, 1)
	go func() {
		conn, err := c.dial(context.Background(), addr, &net.Dialer{Timeout: time.Minute}, nil)
		if conn != nil {
			conn.Close()
		}
		dialed <- err
	}()
	await.True(t, 5*time.Second, time.Millisecond, "the dial waits", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.dialing) == 1
	})
	require.Equal(t, 1, c.closeAll(), "the dial in progress is counted")
	select {
	case err := <-dialed:
		require.ErrorIs(t, err, context.Canceled, "abandoned, not connected (a kernel that accepted it would not drop SYNs)")
	case <-time.After(5 * time.Second):
		t.Fatal("closeAll did not abandon the dial")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.dialing)
	require.Empty(t, c.open)
}

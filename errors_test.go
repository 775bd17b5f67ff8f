package redisadapter_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// Errors a user acts on, from real conditions: each says "redisadapter:"
// once, names the address, master or seeds involved, and says what failed
// rather than which Redis command; errors.Is still finds the sentinels.
func TestErrorMessages(t *testing.T) {
	redistest.Backend(t)
	nothing := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	locked := redistest.Start(t, "--requirepass", "right")
	gone := redistest.Start(t)
	em, err := redisadapter.NewEmitter(bg(t), redisadapter.Standalone{Addr: gone.Addr()}, &redisadapter.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { em.Close(context.Background()) })
	gone.Stop(t)

	short := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	newAdapter := func(t *testing.T, c redisadapter.Connector) error {
		a, err := redisadapter.New(short(t), socketio.NewServer(nil), c, nil)
		if err == nil {
			a.Close(context.Background())
		}
		return err
	}
	for _, tc := range []struct {
		name string
		err  func(t *testing.T) error
		is   error
		says []string
	}{
		{"nothing listening", func(t *testing.T) error {
			return newAdapter(t, redisadapter.Standalone{Addr: nothing})
		}, redisadapter.ErrUnavailable, []string{"connecting to Redis at " + nothing, "connection refused"}},
		{"wrong password", func(t *testing.T) error {
			return newAdapter(t, redisadapter.Standalone{Addr: locked.Addr(), Password: "wrong"})
		}, nil, []string{"connecting to Redis at " + locked.Addr(), "WRONGPASS"}},
		{"emitter, nothing listening", func(t *testing.T) error {
			_, err := redisadapter.NewEmitter(short(t), redisadapter.Standalone{Addr: nothing}, nil)
			return err
		}, redisadapter.ErrUnavailable, []string{"connecting to Redis at " + nothing}},
		{"sentinels not listening", func(t *testing.T) error {
			return newAdapter(t, redisadapter.Sentinel{MasterName: "orders", Addrs: []string{nothing}})
		}, redisadapter.ErrUnavailable, []string{`Sentinel master "orders"`, nothing}},
		{"cluster seeds not listening", func(t *testing.T) error {
			return newAdapter(t, redisadapter.Cluster{Addrs: []string{nothing}})
		}, redisadapter.ErrUnavailable, []string{"Redis Cluster (seeds " + nothing + ")"}},
		{"server count while Redis is down", func(t *testing.T) error {
			_, err := em.ServerCount(short(t))
			return err
		}, redisadapter.ErrUnavailable, []string{"counting the servers to wait for", gone.Addr()}},
		{"publish while Redis is down", func(t *testing.T) error {
			if err := em.Emit(short(t), "x"); err != nil {
				return err
			}
			return em.Flush(short(t)) // a queued message's failure
		}, redisadapter.ErrPublish, []string{"publish failed", "redis unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			require.Error(t, err)
			msg := err.Error()
			t.Log(msg)
			require.True(t, strings.HasPrefix(msg, "redisadapter: "), msg)
			require.Equal(t, 1, strings.Count(msg, "redisadapter:"), msg)
			require.NotContains(t, msg, "NUMSUB", "the condition, not the command")
			for _, s := range tc.says {
				require.Contains(t, msg, s)
			}
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
		})
	}
}

package redisadapter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/faultproxy"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// After an outage a reader checks the stream before reading it, waiting
// for Redis as long as it takes; only a command Redis refuses as such lets
// it read without the check. Real Redis replies.
func TestCommandRefused(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.Do(ctx, admin.B().Arbitrary("ACL", "SETUSER", "reader", "on", ">pw", "~*", "&*", "+@all", "-xinfo").Build()).Error())
	reader, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "reader", Password: "pw", DisableCache: true})
	require.NoError(t, err)
	defer reader.Close()

	noperm := reader.Do(ctx, reader.B().XinfoStream().Key("s").Build()).Error()
	require.True(t, refusal(noperm), "%v", noperm)
	unknown := admin.Do(ctx, admin.B().Arbitrary("NOSUCHCOMMAND").Build()).Error()
	require.True(t, refusal(unknown), "%v", unknown)

	// Not refusals of the command: the stream is checked once Redis lets it.
	_, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "reader", Password: "wrong", DisableCache: true})
	require.Error(t, err)
	require.False(t, refusal(err), "%v", err)
	require.False(t, refusal(context.DeadlineExceeded))
	require.False(t, refusal(nil))
}

// A stream reader's connection is silent when it wrote and has read
// nothing since, for longer than the bound: a flow dropped. One whose
// answer comes slowly but byte by byte (a slow link, a large batch) is
// not, nor one idle in the pool. Through a proxy, real Redis.
func TestCloseSilent(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	px := faultproxy.Start(t, srv.Addr())
	_, _, client, conns, err := open(Standalone{Addr: px.Addr()}, nil)
	require.NoError(t, err)
	defer client.Close()
	const after = 300 * time.Millisecond
	require.NoError(t, client.Do(ctx, client.B().Xadd().Key("s").Id("*").FieldValue().
		FieldValue("f", strings.Repeat("x", 3<<10)).Build()).Error())
	type result struct {
		n    int
		err  error
		took time.Duration
	}
	xread := func() <-chan result {
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			res, err := client.Do(withConnKind(ctx, connStreamReader),
				client.B().Xread().Count(10).Block(400).Streams().Key("s").Id("0").Build()).AsXRead()
			done <- result{len(res["s"]), err, time.Since(start)}
		}()
		return done
	}
	// answered waits for the XREAD, checking the connections meanwhile:
	// it closed between least and most silent ones.
	answered := func(done <-chan result, least, most int) result {
		var r result
		closed := 0
		await.True(t, 10*time.Second, after/8, "the XREAD answered", func() bool {
			closed += conns.closeSilent(after)
			select {
			case r = <-done:
				return true
			default:
				return false
			}
		})
		require.GreaterOrEqual(t, closed, least, "silent connections closed")
		require.LessOrEqual(t, closed, most, "silent connections closed")
		return r
	}

	// A slow link: the entry's 3 KiB at 1 KiB/s take seconds, a few bytes
	// at a time.
	px.SlowRead(1 << 10)
	r := answered(xread(), 0, 0)
	require.NoError(t, r.err)
	require.Equal(t, 1, r.n)
	require.Greater(t, r.took, 4*after, "the answer came slowly")
	px.SlowRead(0)

	// Idle in the pool, long past the bound: kept.
	idle := time.Now()
	await.True(t, 5*time.Second, after/8, "the idle connection kept past the bound", func() bool {
		require.Zero(t, conns.closeSilent(after))
		return time.Since(idle) > 2*after
	})
	require.Equal(t, 1, conns.counts().streamReaders)

	// Silent: its XREAD fails once it has had no answer for the bound.
	// The pipelined connection is silent too if rueidis sent it a
	// keepalive PING meanwhile, and closed with it; nothing else is open.
	pipelined := conns.counts().pipelined
	px.Blackhole(faultproxy.Both)
	r = answered(xread(), 1, 1+pipelined)
	require.ErrorIs(t, r.err, errSilentConn)
	require.Greater(t, r.took, after)
	require.Less(t, r.took, 4*after)
	require.Zero(t, conns.counts().streamReaders)
}

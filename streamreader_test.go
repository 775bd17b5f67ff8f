package redisadapter

import (
	"context"
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

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

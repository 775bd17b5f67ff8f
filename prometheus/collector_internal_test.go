package redisadapterprom

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestValueTypes: how each kind of field a Stats type may hold is exported.
func TestValueTypes(t *testing.T) {
	type stats struct {
		Published uint64
		Sockets   int
		Depth     int64
		Lag       time.Duration
		Up        bool
	}
	saved := table
	defer func() { table = saved }()
	table = []metric{
		{"Published", "published_total", "", "p"},
		{"Sockets", "sockets", "", "s"},
		{"Depth", "depth", "", "d"},
		{"Lag", "lag_seconds", "", "l"},
		{"Up", "up", "", "u"},
	}
	s := stats{Published: 3, Sockets: 2, Depth: -1, Lag: 1500 * time.Millisecond, Up: true}
	c := newCollector(func() reflect.Value { return reflect.ValueOf(s) }, reflect.TypeFor[stats](), "", nil)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP redisadapter_published_total p
# TYPE redisadapter_published_total counter
redisadapter_published_total 3
# HELP redisadapter_sockets s
# TYPE redisadapter_sockets gauge
redisadapter_sockets 2
# HELP redisadapter_depth d
# TYPE redisadapter_depth gauge
redisadapter_depth -1
# HELP redisadapter_lag_seconds l
# TYPE redisadapter_lag_seconds gauge
redisadapter_lag_seconds 1.5
# HELP redisadapter_up u
# TYPE redisadapter_up gauge
redisadapter_up 1
`)))
}

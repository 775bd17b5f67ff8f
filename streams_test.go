package redisadapter_test

import (
	"strings"
	"testing"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// The behavioural suite in streams mode, on each deployment shape.
func TestStreams(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		suite(t, streamsMode, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{Addr: srv.Addr()}, Name: name}
		})
	})
	t.Run("Sentinel", func(t *testing.T) {
		set := sharedSentinel(t)
		suite(t, streamsMode, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}, Name: name}
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		set := sharedCluster(t)
		suite(t, streamsMode, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs()}, Name: name}
		})
	})
	t.Run("ClusterShardedPubSub", func(t *testing.T) {
		set := sharedCluster(t)
		suite(t, streamsOnSharded, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}, Name: name}
		})
	})
}

// A Go node and a Node.js node with @socket.io/redis-streams-adapter 0.3
// on one Redis: broadcasts and every request type, in both directions.
func TestStreamsNodeJSInterop(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		interop(t, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{Addr: srv.Addr()}, Name: name}
		}, "REDIS_URL="+srv.URL(), "STREAMS=1")
	})
	set := sharedCluster(t)
	cluster := "REDIS_CLUSTER=" + strings.Join(set.Addrs(), ",")
	t.Run("Cluster", func(t *testing.T) {
		interop(t, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs()}, Name: name}
		}, cluster, "STREAMS=1")
	})
	t.Run("ClusterShardedPubSub", func(t *testing.T) {
		interop(t, func(name string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}, Name: name}
		}, cluster, "STREAMS=1", "SHARDED=1")
	})
}

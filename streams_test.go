package redisadapter_test

import (
	"testing"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// The behavioural suite in streams mode, on each deployment shape.
func TestStreams(t *testing.T) {
	t.Run("Standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		suite(t, func(t *testing.T) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{URL: srv.URL()}}
		})
	})
	t.Run("Sentinel", func(t *testing.T) {
		set := sharedSentinel(t)
		suite(t, func(t *testing.T) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}}
		})
	})
	t.Run("Cluster", func(t *testing.T) {
		set := sharedCluster(t)
		suite(t, func(t *testing.T) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs()}}
		})
	})
	t.Run("ClusterShardedPubSub", func(t *testing.T) {
		set := sharedCluster(t)
		suite(t, func(t *testing.T) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}}
		})
	})
}

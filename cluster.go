package redisadapter

import (
	"crypto/tls"
	"time"

	"github.com/redis/rueidis"
)

var _ Connector = Cluster{}

// Cluster connects to a Redis Cluster, in one of two modes:
//
//   - classic (the default): PUBLISH, which the cluster bus copies to every
//     node, and subscriptions on whichever node the client picks;
//     wire-compatible with Node's createAdapter on a cluster;
//   - sharded (Sharded: true, Redis 7): SPUBLISH/SSUBSCRIBE, routed by slot,
//     so a broadcast stays inside one shard; wire-compatible with Node's
//     createShardedAdapter (subscriptionMode "dynamic", its default). Classic
//     and sharded nodes do not hear each other.
type Cluster struct {
	// Addrs are host:port addresses of some nodes; the rest are discovered. required
	Addrs []string
	// Username is the ACL user on every node. default: none
	Username string
	// Password is the password on every node. default: none
	Password string
	// TLSConfig, when set, is used for every node. default: nil (no TLS)
	TLSConfig *tls.Config
	// Sharded selects sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7). default: false (classic)
	Sharded bool
}

func (c Cluster) protocol(key, uid string) protocol {
	if c.Sharded {
		return sharded{key, uid}
	}
	return classic{key, uid}
}

// Cluster has no defaults to fill: Addrs is required.

func (c *Cluster) validate() error { return validAddrs("Cluster.Addrs", c.Addrs...) }

func (c Cluster) configured() (Connector, error) { return c, c.validate() }

func (c Cluster) clientOption() rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress: c.Addrs,
		Username:    c.Username,
		Password:    c.Password,
		TLSConfig:   c.TLSConfig,
		// Subscriptions may sit on any node, replicas included, and the
		// server count sums every node: keep the node list fresh.
		ClusterOption: rueidis.ClusterOption{ShardsRefreshInterval: 5 * time.Second},
	}
}

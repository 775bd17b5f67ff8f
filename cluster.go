package redisadapter

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	// RoomSubscriptions makes the node SUBSCRIBE to the namespace's channel
	// and to the channel of each room it holds local sockets in (socket-id
	// rooms included), instead of PSUBSCRIBE to every channel of the
	// namespace: it reads only the broadcasts that concern it. Node.js
	// servers and other nodes of the fleet are unaffected (same wire). Use
	// Adapter.Join rather than conn.Join when the first broadcasts to a
	// room matter. See "Which mode?" in docs/modes.md. Sharded mode always subscribes
	// per room: setting both is an error. default: false (PSUBSCRIBE)
	RoomSubscriptions bool

	// dial, when set, opens the TCP connection to each node (TLS, if any,
	// on top) in place of the client's dialer: a test seam, through which
	// the fault matrix puts a proxy of its own before each node
	// (export_test.go's ClusterDialingVia).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c Cluster) protocol(key, uid string) protocol {
	if c.Sharded {
		return sharded{key, uid}
	}
	return classic{key: key, uid: uid, perRoom: c.RoomSubscriptions}
}

// Cluster has no defaults to fill: Addrs is required.

func (c *Cluster) validate() error {
	if c.Sharded && c.RoomSubscriptions {
		return fmt.Errorf("%w: Cluster.RoomSubscriptions is for classic mode: sharded mode always subscribes per room", ErrConfig)
	}
	return validAddrs("Cluster.Addrs", c.Addrs...)
}

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

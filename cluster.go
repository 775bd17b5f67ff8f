package redisadapter

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

var _ Connector = Cluster{}

// Cluster connects to a Redis Cluster. The adapter then publishes with
// PUBLISH, which the cluster bus copies to every node, and subscribes on
// whichever node the client picks: wire-compatible with Node's
// createAdapter on a cluster.
type Cluster struct {
	// Addrs are host:port addresses of some nodes; the rest are discovered. required
	Addrs []string
	// Username is the ACL user on every node. default: none
	Username string
	// Password is the password on every node. default: none
	Password string
	// TLSConfig, when set, is used for every node. default: nil (no TLS)
	TLSConfig *tls.Config
}

func (c Cluster) clientOption() (rueidis.ClientOption, error) {
	if len(c.Addrs) == 0 {
		return rueidis.ClientOption{}, fmt.Errorf("%w: Cluster needs at least one node address", ErrConfig)
	}
	return rueidis.ClientOption{
		InitAddress: c.Addrs,
		Username:    c.Username,
		Password:    c.Password,
		TLSConfig:   c.TLSConfig,
		// Subscriptions may sit on any node, replicas included, and the
		// server count sums every node: keep the node list fresh.
		ClusterOption: rueidis.ClusterOption{ShardsRefreshInterval: 5 * time.Second},
	}, nil
}

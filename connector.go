package redisadapter

// Connectors: how the adapter reaches Redis. Each deployment shape has its
// own file (standalone.go, sentinel.go, cluster.go, streams.go); open builds
// the client any of them describes.

import (
	"fmt"

	"github.com/redis/rueidis"
)

// A Connector opens the adapter's Redis client for one deployment shape:
// Standalone, Sentinel or Cluster. ParseURL and FromEnv build one from a
// string or the environment.
type Connector interface {
	clientOption() (rueidis.ClientOption, error)
	// protocol makes the connector's wire protocol, bound to the key
	// prefix and the uid of the node (or emitter) it speaks for.
	protocol(key, uid string) protocol
}

// open applies opts' defaults, checks them and opens the Redis client c
// describes: what New and NewEmitter share.
func open(c Connector, opts *Options) (Options, rueidis.Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := o.validate(); err != nil {
		return o, nil, err
	}
	copt, err := c.clientOption()
	if err != nil {
		return o, nil, err
	}
	copt.DisableCache = true // pub/sub only: no client-side caching, no tracking
	// The adapter does its own retrying: a subscription that rueidis renews
	// by itself is down without the adapter knowing (and comes back on
	// rueidis's back-off, up to a second after Redis does); a request fails
	// at once rather than after retries that outlast the outage.
	copt.DisableRetry = true
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return o, nil, fmt.Errorf("redisadapter: connect to redis: %w", unreachable(err))
	}
	return o, client, nil
}

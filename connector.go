package redisadapter

// Connectors: how the adapter reaches Redis. Each deployment shape has its
// own file (standalone.go, sentinel.go, cluster.go, streams.go); open builds
// the client any of them describes.

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/redis/rueidis"
)

// A Connector opens the adapter's Redis client for one deployment shape:
// Standalone, Sentinel or Cluster, or Streams around one of them. ParseURL
// and FromEnv build one from a string or the environment.
type Connector interface {
	// configured returns the connector with its defaults filled in
	// (setDefaults) and checked (validate): an error wraps ErrConfig and
	// names the field.
	configured() (Connector, error)
	// clientOption is the rueidis option of a configured connector.
	clientOption() rueidis.ClientOption
	// protocol makes the connector's wire protocol, bound to the key
	// prefix and the uid of the node (or emitter) it speaks for; it reads
	// a configured connector.
	protocol(key, uid string) protocol
}

// open applies the defaults of opts and c, checks them and opens the Redis
// client c describes: what New and NewEmitter share. It returns c
// configured, to make the protocol from, and the counter of the client's
// connections (conns.go).
func open(c Connector, opts *Options) (Connector, Options, rueidis.Client, *connCounter, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, o, nil, nil, err
	}
	c, err := c.configured()
	if err != nil {
		return nil, o, nil, nil, err
	}
	copt := c.clientOption()
	copt.DisableCache = true // pub/sub only: no client-side caching, no tracking
	// The adapter does its own retrying: a subscription that rueidis renews
	// by itself is down without the adapter knowing (and comes back on
	// rueidis's back-off, up to a second after Redis does); a request fails
	// at once rather than after retries that outlast the outage.
	copt.DisableRetry = true
	conns := &connCounter{dialer: copt.Dialer, tls: copt.TLSConfig, via: dialSeam(c)}
	copt.DialCtxFn = conns.dial
	if copt.Sentinel.MasterSet != "" {
		conns.sentinel = &copt
		conns.dialedElsewhere = make(chan struct{}, 1)
	}
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return nil, o, nil, nil, errorf("connecting to %s: %w", redisTarget(copt), unreachable(err))
	}
	conns.client = client
	return c, o, client, conns, nil
}

// roomSubscriptions reports whether c is a classic connector with
// RoomSubscriptions.
func roomSubscriptions(c Connector) bool {
	switch c := c.(type) {
	case Standalone:
		return c.RoomSubscriptions
	case Sentinel:
		return c.RoomSubscriptions
	case Cluster:
		return c.RoomSubscriptions
	}
	return false
}

// dialSeam returns the TCP dial of c's Cluster or Sentinel, if a test set
// one (Cluster.dial, Sentinel.dial); nil otherwise.
func dialSeam(c Connector) func(ctx context.Context, network, addr string) (net.Conn, error) {
	switch c := c.(type) {
	case Cluster:
		return c.dial
	case Sentinel:
		return c.dial
	case Streams:
		return dialSeam(c.Connector)
	}
	return nil
}

// redisTarget names what opt connects to, for error messages: the address, the
// Sentinel master's name, or the cluster's seed addresses.
func redisTarget(opt rueidis.ClientOption) string {
	addrs := strings.Join(opt.InitAddress, ", ")
	switch {
	case opt.Sentinel.MasterSet != "":
		return fmt.Sprintf("Sentinel master %q (sentinels %s)", opt.Sentinel.MasterSet, addrs)
	case opt.ForceSingleClient:
		return "Redis at " + addrs
	default:
		return fmt.Sprintf("Redis Cluster (seeds %s)", addrs)
	}
}

// validAddrs is an error wrapping ErrConfig, naming field, unless addrs
// holds at least one address and each is host:port.
func validAddrs(field string, addrs ...string) error {
	if len(addrs) == 0 {
		return errorf("%w: %s is empty", ErrConfig, field)
	}
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil || strings.Contains(a, "/") {
			return errorf("%w: %s %q is not host:port (for a redis:// URL, use ParseURL)", ErrConfig, field, a)
		}
	}
	return nil
}

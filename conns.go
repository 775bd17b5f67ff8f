package redisadapter

// Counting the connections to Redis that an Adapter's or an Emitter's
// client holds, for Stats: rueidis opens them itself, lazily, and says
// nothing about them, so open hands it a dialer that counts each TCP
// connection from its dial to its Close.
//
// What rueidis opens (v1.0.x, RESP3): per Redis node, up to
// 2^PipelineMultiplex pipelined connections (standalone and Sentinel:
// 1, 2 or 4 as GOMAXPROCS is 1, 2-3 or 4 and more; Cluster: 1), each
// opened on first use, which carry the commands and every SUBSCRIBE,
// PSUBSCRIBE and SSUBSCRIBE the adapter keeps (a subscription rides on a
// pipelined connection, it takes none of its own); a blocking command
// (a stream reader's XREAD BLOCK) or Dedicate (the room channels' shards,
// the PING a late delivery probe sends aside) takes a connection of its
// own from a pool, which keeps it open, idle, when it is given back; with Sentinel, one connection to one sentinel.
//
// The kinds: a stream reader's XREAD dials with a context that says so;
// a shard counts the connection it holds; a connection whose address is
// not among the client's nodes is a sentinel's (Sentinel mode: during a
// failover, one to the old master that is still closing counts there);
// the rest are pipelined, idle pooled ones included.

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// connKind is what a connection is dialed for, when its dialer can tell.
type connKind uint8

const (
	connOther        connKind = iota // pipelined, a shard's, a sentinel's: told apart in counts
	connStreamReader                 // a stream reader's XREAD BLOCK
)

type connKindKey struct{}

// withConnKind marks ctx: a connection dialed for a command run with it
// is of kind k.
func withConnKind(ctx context.Context, k connKind) context.Context {
	return context.WithValue(ctx, connKindKey{}, k)
}

// connCounter counts the open connections of one client.
type connCounter struct {
	client   rueidis.Client        // set once open returns; nil before
	sentinel *rueidis.ClientOption // the client's option if it is a Sentinel client; nil otherwise
	rooms    atomic.Int64          // connections the room channels' shards hold

	mu      sync.Mutex
	open    map[*countedConn]struct{}
	dialing map[*context.CancelFunc]string // the dials not connected yet, to their address
}

// dial is the client's DialCtxFn: rueidis's own dial, counted. The plain
// connection is counted beneath TLS, so that closeAll never waits for a
// peer that does not read (tls.Conn.Close writes an alert first).
func (c *connCounter) dial(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
	raw, err := c.connect(ctx, dst, d)
	if err != nil {
		return nil, err
	}
	k, _ := ctx.Value(connKindKey{}).(connKind)
	cc := &countedConn{Conn: raw, c: c, dst: dst, kind: k}
	c.mu.Lock()
	if c.open == nil {
		c.open = make(map[*countedConn]struct{})
	}
	c.open[cc] = struct{}{}
	c.mu.Unlock()
	if cfg == nil {
		return cc, nil
	}
	if cfg.ServerName == "" { // as tls.Dialer does
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(dst)
	}
	tc := tls.Client(cc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = cc.Close()
		return nil, err
	}
	return tc, nil
}

// connect dials dst; closeAll abandons it until it connects.
func (c *connCounter) connect(ctx context.Context, dst string, d *net.Dialer) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	if c.dialing == nil {
		c.dialing = make(map[*context.CancelFunc]string)
	}
	c.dialing[&cancel] = dst
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.dialing, &cancel)
		c.mu.Unlock()
	}()
	return d.DialContext(ctx, "tcp", dst)
}

// closeAll closes every connection open now but the sentinels', and
// abandons every dial not connected yet but to a sentinel, and returns how
// many: the delivery probe's way to make rueidis, which would keep a silent
// connection open, dial afresh (probe.go). A dial abandoned is sent again:
// in a network that drops everything, a dial waits for its SYN, resent one,
// three, seven seconds later, and a fresh one finds the network back
// sooner. A sentinel's connection carries no broadcast, and rueidis
// refreshes the master through it: closed while a refresh waits on a
// frozen master, it would leave rueidis watching no sentinel once that
// refresh ends.
func (c *connCounter) closeAll() int {
	return c.close(func(dst string) bool { return !c.isSentinel(dst) })
}

// closeSentinels closes the connections to the sentinels: rueidis then
// asks a sentinel for the master again (a node that finds itself on the
// wrong server: probe.go's checkRole).
func (c *connCounter) closeSentinels() int {
	return c.close(c.isSentinel)
}

// isSentinel reports whether addr is one of the sentinels the client was
// given (rueidis may learn of others, which count as data nodes here).
func (c *connCounter) isSentinel(addr string) bool {
	return c.sentinel != nil && slices.Contains(c.sentinel.InitAddress, addr)
}

// close closes the open connections to the addresses which picks, and
// abandons the dials to them, and returns how many.
func (c *connCounter) close(which func(dst string) bool) int {
	c.mu.Lock()
	var open []*countedConn
	for cc := range c.open {
		if which(cc.dst) {
			open = append(open, cc)
		}
	}
	var dialing []context.CancelFunc
	for cancel, dst := range c.dialing {
		if which(dst) {
			dialing = append(dialing, *cancel)
		}
	}
	c.mu.Unlock()
	for _, cancel := range dialing {
		cancel()
	}
	for _, cc := range open {
		_ = cc.Close()
	}
	return len(open) + len(dialing)
}

// connCounts are the open connections by kind.
type connCounts struct {
	pipelined, rooms, streamReaders, sentinels int
}

func (c *connCounter) counts() connCounts {
	var nodes map[string]rueidis.Client
	if c.sentinel != nil && c.client != nil {
		nodes = c.client.Nodes()
	}
	var n connCounts
	other := 0
	c.mu.Lock()
	for cc := range c.open {
		switch {
		case cc.kind == connStreamReader:
			n.streamReaders++
		case nodes != nil && nodes[cc.dst] == nil:
			n.sentinels++
		default:
			other++
		}
	}
	c.mu.Unlock()
	n.rooms = int(c.rooms.Load())
	n.pipelined = max(other-n.rooms, 0)
	return n
}

// countedConn is a connection counted until its first Close.
type countedConn struct {
	net.Conn
	c    *connCounter
	dst  string
	kind connKind
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.mu.Lock()
		delete(cc.c.open, cc)
		cc.c.mu.Unlock()
	})
	return cc.Conn.Close()
}

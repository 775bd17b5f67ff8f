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
// the probe a late delivery probe publishes aside) takes a connection of
// its own from a pool, which keeps it open, idle, when it is given back;
// with Sentinel, one connection to one sentinel.
//
// The kinds: a stream reader's XREAD dials with a context that says so;
// a shard counts the connection it holds; rueidis dials a sentinel with
// the option's Sentinel.Dialer, which sentinelDialer marks, whatever
// address it learned the sentinel at; the rest are pipelined, idle pooled
// ones included. Each connection also notes when it last wrote and last
// read bytes (closeSilent, closeStale): an atomic store per read and per
// write, beside the system call.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// sentinelResolver marks the dialer rueidis dials sentinels with
// (sentinelDialer): it resolves as the default resolver does.
var sentinelResolver = &net.Resolver{}

// sentinelDialer is the Sentinel.Dialer of a Sentinel client: a dial made
// with it is to a sentinel.
func sentinelDialer() net.Dialer { return net.Dialer{Resolver: sentinelResolver} }

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
	closes   atomic.Uint64         // rises with each close that closes or abandons something (supervisor.closes)
	dialer   net.Dialer            // the client's, for the heal watch's own dials (heal.go)
	tls      *tls.Config           // the client's to the data nodes; nil: none
	// dialedElsewhere (cap 1) is given a token when a Sentinel client
	// dials a data server while it holds a connection to another: it may
	// be moving to a new master (followMaster).
	dialedElsewhere chan struct{}
	// via, when set, dials in place of the dialer (Cluster.dial, Sentinel.dial: test seams).
	via func(ctx context.Context, network, addr string) (net.Conn, error)

	mu      sync.Mutex
	open    map[*countedConn]struct{}
	dialing map[*dialing]struct{} // the dials not connected yet
}

// dialing is a dial not connected yet.
type dialing struct {
	cancel   context.CancelFunc
	dst      string
	sentinel bool
	started  time.Time
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
	cc := &countedConn{Conn: raw, c: c, dst: dst, kind: k, sentinel: d.Resolver == sentinelResolver, opened: time.Now()}
	c.mu.Lock()
	if c.open == nil {
		c.open = make(map[*countedConn]struct{})
	}
	c.open[cc] = struct{}{}
	c.mu.Unlock()
	if cfg == nil {
		return cc, nil
	}
	tc := tls.Client(cc, serverNamed(cfg, dst))
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
	dl := &dialing{cancel: cancel, dst: dst, sentinel: d.Resolver == sentinelResolver, started: time.Now()}
	c.mu.Lock()
	if c.dialing == nil {
		c.dialing = make(map[*dialing]struct{})
	}
	c.dialing[dl] = struct{}{}
	moving := c.dialedElsewhere != nil && !dl.sentinel && c.openElsewhere(dst)
	c.mu.Unlock()
	if moving {
		select {
		case c.dialedElsewhere <- struct{}{}:
		default:
		}
	}
	defer func() {
		c.mu.Lock()
		delete(c.dialing, dl)
		c.mu.Unlock()
	}()
	return c.dialTCP(ctx, d, dst)
}

// dialTCP opens a TCP connection to addr with d, or through via when set:
// the one place the client's dials and the heal watch's (heal.go) meet.
func (c *connCounter) dialTCP(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	if c.via != nil {
		return c.via(ctx, "tcp", addr)
	}
	return d.DialContext(ctx, "tcp", addr)
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
	return c.close(func(sentinel bool, _ string, _ time.Time) bool { return !sentinel })
}

// closeOlder is closeAll for the connections opened and the dials started
// before t: a renewal still under way is left to finish.
func (c *connCounter) closeOlder(t time.Time) int {
	return c.close(func(sentinel bool, _ string, started time.Time) bool { return !sentinel && started.Before(t) })
}

// closeSentinels closes the connections to the sentinels: rueidis then
// asks a sentinel for the master again (a node that finds itself on the
// wrong server: probe.go's checkRole).
func (c *connCounter) closeSentinels() int {
	return c.close(func(sentinel bool, _ string, _ time.Time) bool { return sentinel })
}

// elsewhere reports whether a connection is open, or a dial under way,
// to another server than addr, a sentinel's aside.
func (c *connCounter) elsewhere(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.openElsewhere(addr) {
		return true
	}
	which := otherThan(addr)
	for dl := range c.dialing {
		if which(dl.sentinel, dl.dst, dl.started) {
			return true
		}
	}
	return false
}

// openElsewhere reports whether a connection is open to another server
// than addr, a sentinel's aside. c.mu is held.
func (c *connCounter) openElsewhere(addr string) bool {
	which := otherThan(addr)
	for cc := range c.open {
		if which(cc.sentinel, cc.dst, cc.opened) {
			return true
		}
	}
	return false
}

// closeElsewhere is closeAll for the connections and dials to another
// server than addr: a Sentinel client's to an old master (probe.go's
// leaveOldMaster).
func (c *connCounter) closeElsewhere(addr string) int { return c.close(otherThan(addr)) }

// otherThan picks the connections and dials to another server than addr,
// a sentinel's aside (close's which).
func otherThan(addr string) func(sentinel bool, dst string, _ time.Time) bool {
	return func(sentinel bool, dst string, _ time.Time) bool { return !sentinel && dst != addr }
}

// closeTo is closeAll for the connections and dials to the data node at
// addr: a cluster master whose room connection's probe did not come back
// (shards.go). The client's connection to it carries the node's publishes
// on its slots: left open, they would wait there, and a master frozen past
// its failover executes them once it thaws, delivering them to no one
// (or to subscriptions closed meanwhile) while answering them as sent.
// Closed, they fail, and are counted.
func (c *connCounter) closeTo(addr string) int {
	return c.close(func(sentinel bool, dst string, _ time.Time) bool { return !sentinel && dst == addr })
}

// close closes the open connections and abandons the dials which picks,
// by whether they are a sentinel's, where they go and when they were
// started, and returns how many.
func (c *connCounter) close(which func(sentinel bool, dst string, started time.Time) bool) int {
	return c.closeSparing(which, nil)
}

// serverNamed is cfg for a TLS connection to dst: with dst's host as the
// server name when cfg has none, as tls.Dialer does.
func serverNamed(cfg *tls.Config, dst string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(dst)
	return cfg
}

// closeStale is closeOlder for the connections opened and the dials
// started before t, but spares a connection that read bytes since spare
// (at most t): one a renewal since then took (the renewed subscriptions'
// connection, when rueidis had it open already) is serving, where one
// dialed into a blackhole that stays silent after it heals has read
// nothing since (receive.go's refreshConnections; the heal watch).
func (c *connCounter) closeStale(t, spare time.Time) int {
	return c.closeSparing(func(sentinel bool, _ string, started time.Time) bool { return !sentinel && started.Before(t) },
		func(cc *countedConn) bool { return cc.readSince(spare) })
}

// closeSparing is close, but for the open connections spare picks (nil:
// none).
func (c *connCounter) closeSparing(which func(sentinel bool, dst string, started time.Time) bool, spare func(*countedConn) bool) int {
	c.mu.Lock()
	var open []*countedConn
	for cc := range c.open {
		if which(cc.sentinel, cc.dst, cc.opened) && (spare == nil || !spare(cc)) {
			open = append(open, cc)
		}
	}
	var dials []context.CancelFunc
	for dl := range c.dialing {
		if which(dl.sentinel, dl.dst, dl.started) {
			dials = append(dials, dl.cancel)
		}
	}
	c.mu.Unlock()
	if len(open)+len(dials) > 0 {
		c.closes.Add(1) // before: a loop that sees its connection fail sees it risen
	}
	for _, cancel := range dials {
		cancel()
	}
	for _, cc := range open {
		_ = cc.Close()
	}
	return len(open) + len(dials)
}

// errSilentConn wraps what a Read on a connection closeSilent closed
// fails with.
var errSilentConn = errors.New("closed: nothing read since the last write")

// closeSilent closes the connections (a sentinel's aside) that wrote and
// have read nothing since, for longer than after, and returns how many:
// the connections a dropped flow left open (streamreader.go: after a
// late XREAD BLOCK). Every command is answered, and a blocking one within
// its block time (a stream reader's XREAD BLOCK, ProbeInterval); over a
// slow link, or when it is a large batch, the answer comes slowly but
// byte by byte: time alone would take it for a silent one. An idle
// connection (pipelined with nothing waiting, or given back to the pool)
// has read the answer to its last write. A Read on a connection closed
// here fails with errSilentConn. The check is made again just before the
// close: the answer may have come meanwhile.
func (c *connCounter) closeSilent(after time.Duration) int {
	c.mu.Lock()
	var silent []*countedConn
	for cc := range c.open {
		if !cc.sentinel && cc.silentFor(after) {
			silent = append(silent, cc)
		}
	}
	c.mu.Unlock()
	closed := 0
	for _, cc := range silent {
		if !cc.silentFor(after) {
			continue
		}
		if closed == 0 {
			c.closes.Add(1) // as close does: the loop that sees its connection fail tries again at once
		}
		cc.silenced.Store(true)
		_ = cc.Close()
		closed++
	}
	return closed
}

// connCounts are the open connections by kind.
type connCounts struct {
	pipelined, rooms, streamReaders, sentinels int
}

func (c *connCounter) counts() connCounts {
	var n connCounts
	other := 0
	c.mu.Lock()
	for cc := range c.open {
		switch {
		case cc.kind == connStreamReader:
			n.streamReaders++
		case cc.sentinel:
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
	c        *connCounter
	dst      string
	kind     connKind
	sentinel bool      // dialed with sentinelDialer
	opened   time.Time // when it connected
	once     sync.Once
	// When it last started a Write and last read bytes, since opened
	// (monotonic; 0: never), and whether closeSilent closed it.
	wrote, read atomic.Int64
	silenced    atomic.Bool
}

// Read notes when it read bytes.
func (cc *countedConn) Read(b []byte) (int, error) {
	n, err := cc.Conn.Read(b)
	if n > 0 {
		cc.read.Store(int64(time.Since(cc.opened)))
	}
	if err != nil && cc.silenced.Load() {
		err = fmt.Errorf("%w: %w", errSilentConn, err)
	}
	return n, err
}

// Write notes when it started writing: before the write, so that the
// answer's first Read comes after.
func (cc *countedConn) Write(b []byte) (int, error) {
	cc.wrote.Store(int64(time.Since(cc.opened)))
	return cc.Conn.Write(b)
}

// readSince reports whether cc read bytes after t.
func (cc *countedConn) readSince(t time.Time) bool {
	r := cc.read.Load()
	return r > 0 && cc.opened.Add(time.Duration(r)).After(t)
}

// silentFor reports whether cc wrote and has read nothing since, for
// longer than d. The write is loaded first: a Read between the loads
// makes it answered.
func (cc *countedConn) silentFor(d time.Duration) bool {
	w := cc.wrote.Load()
	r := cc.read.Load()
	return w > r && time.Since(cc.opened)-time.Duration(w) > d
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.mu.Lock()
		delete(cc.c.open, cc)
		cc.c.mu.Unlock()
	})
	return cc.Conn.Close()
}

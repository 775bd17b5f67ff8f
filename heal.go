package redisadapter

// Finding a healed network while a renewal is stuck. After a failed probe
// the prober closes a renewal's connection once it has waited renewalWait
// (100 ms at least) unanswered, and the loop dials again (probe.go): a
// connection dialed into a blackhole stays silent after the network
// heals (its handshake's answer was dropped, and a flow a NAT dropped
// stays dropped), so a node that relied on those dials alone found a
// healed network about renewalWait/2 after the heal, on average. The heal
// watch dials Redis itself, at first healInFlight fresh connections per
// renewalWait, staggered, each asking PING and given renewalWait: the
// first answer proves the way to Redis is back both ways, and the
// connections dialed before it that have read nothing since are closed,
// so that the loops dial again at once, within renewalWait/healInFlight
// of the heal (25 ms on a fast network; 50 ms two seconds in) and a round
// trip.
//
// A Redis frozen (SIGSTOP, a long fork) is not told apart from a
// blackhole, and each connection dialed to it while it is frozen, closed
// or not, takes a place in its accept queue (tcp-backlog, 511 by default)
// until it thaws: once the queue is full, its host drops every SYN, and
// in the fault matrix the renewals after a 15 s SIGSTOP then came back
// 3-4 s after the thaw, where they took 0.1 s with the loops' dials alone.
// So the watch's dials grow sparser as the fault lasts (one per
// healDecay-th of the time stuck), and while it runs the loops' stuck
// renewals are closed at healLoopWaits renewalWaits rather than one: the
// watch closes them when Redis answers.

import (
	"context"
	"crypto/tls"
	"sync"
	"time"
)

// healInFlight is how many dials the heal watch starts per renewalWait at
// first (40 a second at renewalFloor), and bounds those under way at
// once, whether Redis refuses them, leaves them unanswered (frozen) or its
// host drops the SYNs.
const healInFlight = 4

// healDecay: after renewalWait/healInFlight*healDecay stuck (1 s at
// renewalFloor), the watch dials once per healDecay-th of the time stuck
// (50 ms after 2 s, 350 ms after 14 s): about 145 dials in 14 s (130
// counted per node in the fault matrix's 15 s SIGSTOP).
const healDecay = 40

// healLoopWaits is how many renewalWaits a stuck renewal's connection is
// given while the heal watch runs.
const healLoopWaits = 4

// healWatch dials Redis while a renewal after a failed probe is stuck
// (the prober's tick); its zero value is ready. It is the Adapter's, one
// for all its namespaces' probers.
type healWatch struct {
	mu       sync.Mutex
	since    time.Time // when the renewal was first found stuck
	ticked   time.Time // the last tick
	last     time.Time // when the last dial started
	inFlight int
	// found: when an answer last closed the stale connections. The
	// renewal it started is given renewalWait before the watch closes
	// anything again: a slow one (Redis thawing from a long SIGSTOP) is
	// not closed over and over.
	found time.Time
}

// tick starts a dial to addr unless one started within
// wait/healInFlight (or a healDecay-th of the time the renewal has been
// stuck: since the first tick after a pause longer than wait),
// healInFlight are under way, or an answer closed the connections within
// wait; the dial is given wait. On the first answer since the last, it
// closes, after as long again as the answer took, the connections opened
// and the dials started before that dial started that have read nothing
// since the renewal got stuck (connCounter.closeStale), and reports their
// number to closed.
// spawn runs the dial on a goroutine the owner waits for.
func (w *healWatch) tick(ctx context.Context, c *connCounter, addr string, wait time.Duration, spawn func(func()) bool, closed func(int)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if now.Sub(w.ticked) > wait {
		w.since = now
	}
	w.ticked = now
	interval := max(wait/healInFlight, now.Sub(w.since)/healDecay)
	if now.Sub(w.last) < interval || w.inFlight >= healInFlight || now.Sub(w.found) < wait {
		return
	}
	stuck := w.since
	started := spawn(func() {
		answered := c.answers(ctx, addr, wait)
		w.mu.Lock()
		w.inFlight--
		first := answered && w.found.Before(now)
		if first {
			w.found = time.Now()
		}
		w.mu.Unlock()
		// A Redis that thaws answers every connection queued to it at
		// once, the renewals' too, which were dialed before this one:
		// their answers are given as long as this one took (a healed
		// network answers a fresh dial within a round trip) to be read
		// before the connections that read nothing are closed.
		// A connection that read since the renewal got stuck is spared:
		// one dialed into the fault reads nothing, and one a loop
		// renewed before this dial (a renewal is on several
		// connections, not all stuck) serves.
		if first && sleepCtx(ctx, time.Since(now)) {
			closed(c.closeStale(now, stuck))
		}
	})
	if started {
		w.last = now
		w.inFlight++
	}
}

// answers reports whether Redis at addr answers, within wait, a PING on
// a connection of its own, dialed as the client's are (an answer, an
// error such as NOAUTH included, proves the way back; with TLS, the
// handshake comes first). The connection is not counted: it is no
// client's, and is closed before answers returns.
func (c *connCounter) answers(ctx context.Context, addr string, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	d := c.dialer
	conn, err := c.dialTCP(ctx, &d, addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	raw := conn
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() }) // the owner closing: Close does not wait out the deadline
	defer stop()
	if c.tls != nil {
		tc := tls.Client(conn, serverNamed(c.tls, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			return false
		}
		conn = tc
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	var b [1]byte
	n, _ := conn.Read(b[:])
	return n > 0
}

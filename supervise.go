package redisadapter

// The one loop that keeps a connection or a subscription alive: every
// subscription (receive.go), each room channels' connection to a cluster
// master (shards.go) and each stream reader (streamreader.go) is an
// attempt run by supervisor.run, and the publisher's resends (resend.go)
// wait with the same back-off. A new kind of fault is handled here once.

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Back-off between attempts. rueidis does not retry for the adapter (open
// sets DisableRetry): its own back-off grows to a second and is not reset
// during an outage, so subscriptions came back up to a second after Redis
// did. A short, capped interval brings them back within it; an attempt
// against a Redis that is down costs a refused dial.
const minBackoff, maxBackoff = 10 * time.Millisecond, 50 * time.Millisecond

// backoff is an exponential delay between min and max, with jitter, so that
// the nodes of a fleet (and the loops of one node) do not all reconnect in
// the same instant. The zero value is not usable: set min and max.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the delay before the next attempt: in [cur/2, cur], cur
// doubling from min up to max.
func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur/2 + rand.N(b.cur/2+1)
}

// reset starts the delays again from min.
func (b *backoff) reset() { b.cur = 0 }

// wait sleeps the next delay, or until ctx ends: it reports whether the
// delay passed.
func (b *backoff) wait(ctx context.Context) bool { return sleepCtx(ctx, b.next()) }

// sleepCtx waits d, or until ctx ends: it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// supervisor runs the loops of one Adapter.
type supervisor struct {
	log     *slog.Logger
	outages *atomic.Uint64 // Stats.Outages
	// closes, when set, rises each time the adapter closes connections
	// of its own accord (connCounter.closes: a failed delivery probe, a
	// renewal stuck in a blackhole): an attempt that failed while it rose
	// is tried again at once. The back-off spares a Redis that refuses or
	// drops connections; these were closed here, and the prober and the
	// heal watch pace their closes themselves (renewalWait): waiting would
	// only add up to maxBackoff to the time a node takes to find a healed
	// network.
	closes *atomic.Uint64
}

// loop is a connection or subscription kept alive by a supervisor.
type loop struct {
	// what is kept alive, for the log ("subscription", "stream reader", ...).
	what string
	// attrs are more attributes for its log lines (a master, a stream).
	attrs []any
	// attempt establishes the connection and holds it until it fails, and
	// returns why; it calls up once the connection serves (from any
	// goroutine, any number of times). It returns nil when there is nothing
	// more to do, and should return soon after ctx ends.
	attempt func(ctx context.Context, up func()) error
	// outage, when set, is told when an outage begins (true) and ends
	// (false: the connection serves again, or run returns during the
	// outage), after the log line that says so.
	outage func(down bool)
}

// run runs l.attempt until it returns nil or ctx ends, waiting a back-off
// after each failure but one during which the adapter closed connections
// (s.closes). The first failure after the connection served begins
// an outage: logged as a warning and counted in Stats.Outages; the next up
// ends it, logged with how long it lasted. Failures within an outage are
// logged at debug level.
func (s supervisor) run(ctx context.Context, l loop) {
	b := backoff{min: minBackoff, max: maxBackoff}
	var (
		served    atomic.Bool  // up was called during this attempt
		downSince atomic.Int64 // unix nanoseconds when the outage began; 0: none
	)
	up := func() {
		if served.Swap(true) {
			return
		}
		if since := downSince.Swap(0); since != 0 {
			s.log.Info(l.what+" back", append(l.attrs, "down", time.Since(time.Unix(0, since)).Round(time.Millisecond))...)
			if l.outage != nil {
				l.outage(false)
			}
		}
	}
	defer func() {
		if downSince.Load() != 0 && l.outage != nil {
			l.outage(false) // stopped during an outage: it is over for the loop's owner
		}
	}()
	for {
		served.Store(false)
		var closes uint64
		if s.closes != nil {
			closes = s.closes.Load()
		}
		err := l.attempt(ctx, up)
		if err == nil || ctx.Err() != nil {
			return
		}
		if downSince.CompareAndSwap(0, time.Now().UnixNano()) {
			// The first failure since the connection served (or since the
			// start): an outage begins, and the first retry comes soon.
			b.reset()
			s.outages.Add(1)
			s.log.Warn(l.what+" lost; trying again", append(l.attrs, "err", err)...)
			if l.outage != nil {
				l.outage(true)
			}
		} else {
			s.log.Debug(l.what+": trying again", append(l.attrs, "err", err)...)
		}
		if s.closes != nil && s.closes.Load() != closes {
			continue
		}
		if !b.wait(ctx) {
			return
		}
	}
}

package redisadapter

// A shard: one dedicated pub/sub connection to one master (a cluster's, or
// the one server outside a cluster), holding the room channels (rooms.go)
// whose slots that master serves. Each connection proves it delivers with a
// delivery probe of its own (probe.go), and is renewed alone when a probe
// does not come back.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// shard holds the room channels of one master on one connection. The
// manager owns count; mu guards the changes it asks for and the
// sunsubscribe pushes the reader saw; the atomics are shared; the shard's
// goroutine owns the rest.
type shard struct {
	r     *roomSubs
	addr  string
	count int // channels the manager assigned here
	stop  context.CancelFunc

	mu      sync.Mutex
	adds    map[string]added
	dels    map[string]struct{}
	unsubs  []unsubPush                // channels Redis sunsubscribed
	waits   map[string][]chan struct{} // Joins waiting for a channel's confirmation
	changed chan struct{}              // cap 1: something above is waiting

	held map[string]*heldChannel
	todo []string // held channels to subscribe on the current connection
	// gapFrom (sinceStart; 0: none): the earliest instant from which a
	// channel confirmed since the last gap notice had gone unread; the
	// notice goes once every channel is subscribed (gaps.go). The loop's
	// alone.
	gapFrom int64
	// lag is the last round trip of the connections' delivery probes.
	lag atomic.Int64
	// The manager's view of when a channel it moves elsewhere went unread
	// (sinceStart): readAt, when a connection last read anything (a
	// message, probe or confirmation), the last proof that the channels
	// were delivered; unreadFrom, while some channel is not subscribed
	// again, the earliest instant since which it has gone unread (a failed
	// connection's last read, or a gap it was moved here with).
	readAt, unreadFrom atomic.Int64

	// Under mu: the subscriptions Redis says the current connection holds
	// (its last confirmation's count), and their kind, for Stats.
	confirmed     int64
	confirmedKind subKind

	// probe is the channel of the connection's delivery probe, set by the
	// manager (never nil): one whose slot the master serves, read by this
	// connection alone; "" when none was found. probing: the current connection
	// subscribes to it (not a room: Stats does not count it).
	probe   atomic.Pointer[string]
	probing atomic.Bool
	// probeDead: a probe declared the connection dead, and it has not
	// served since (counted in the manager's deadProbes, for Ping: the
	// outage begins only once the connection is closed, which waits up to
	// a second for a silent peer).
	probeDead atomic.Bool
}

type heldChannel struct {
	on   bool // subscribed on the current connection
	lost bool // subscribed before: subscribing counts as a resubscribe
	// gapFrom (sinceStart; 0: none): unread since, a connection having
	// failed or a move; its confirmation ends the gap.
	gapFrom int64
}

// unsubPush is a channel Redis sunsubscribed, at (sinceStart).
type unsubPush struct {
	channel string
	at      int64
}

// added is a channel the manager gives a shard.
type added struct {
	lost    bool  // subscribed before
	gapFrom int64 // as heldChannel's
}

// newShard starts the shard of addr, probed on probe, on a goroutine the
// adapter owns, ended by the manager (stop) or with the manager's context
// (Close).
func newShard(r *roomSubs, addr, probe string) *shard {
	ctx, stop := context.WithCancel(r.ctx)
	s := &shard{r: r, addr: addr, stop: stop, changed: make(chan struct{}, 1), held: make(map[string]*heldChannel)}
	s.probe.Store(&probe)
	if !r.a.spawn(func() { s.run(ctx) }) {
		stop()
	}
	return s
}

// add subscribes ch, or merges a's gap into it if it holds ch already;
// waiters are closed once it is confirmed.
func (s *shard) add(ch string, a added, waiters []chan struct{}) {
	s.mu.Lock()
	delete(s.dels, ch)
	if s.adds == nil {
		s.adds = make(map[string]added)
	}
	if old, ok := s.adds[ch]; ok {
		a = added{lost: a.lost || old.lost, gapFrom: earliest(a.gapFrom, old.gapFrom)}
	}
	s.adds[ch] = a
	s.addWaiters(ch, waiters...)
	s.mu.Unlock()
	s.signal()
}

// await closes w once ch is confirmed (at once if it is).
func (s *shard) await(ch string, w chan struct{}) {
	s.mu.Lock()
	s.addWaiters(ch, w)
	s.mu.Unlock()
	s.signal()
}

func (s *shard) addWaiters(ch string, waiters ...chan struct{}) {
	if len(waiters) == 0 {
		return
	}
	if s.waits == nil {
		s.waits = make(map[string][]chan struct{})
	}
	s.waits[ch] = append(s.waits[ch], waiters...)
}

// remove unsubscribes ch, and returns the Joins still waiting for it and
// what the manager cannot see of its gap (sinceStart; 0: none): one it
// was added with and this shard has not taken yet, or Redis's unsubscribe
// push still to be handled.
func (s *shard) remove(ch string) ([]chan struct{}, int64) {
	s.mu.Lock()
	gapFrom := s.adds[ch].gapFrom
	for _, u := range s.unsubs {
		if u.channel == ch {
			gapFrom = earliest(gapFrom, u.at)
		}
	}
	delete(s.adds, ch)
	if s.dels == nil {
		s.dels = make(map[string]struct{})
	}
	s.dels[ch] = struct{}{}
	waiters := s.waits[ch]
	delete(s.waits, ch)
	s.mu.Unlock()
	s.signal()
	return waiters, gapFrom
}

// handBack gives ch back to the manager (refused or dropped by Redis),
// with the Joins waiting for it and a's state for its next shard.
func (s *shard) handBack(ch string, a added) {
	s.mu.Lock()
	waiters := s.waits[ch]
	delete(s.waits, ch)
	s.mu.Unlock()
	s.r.report(shardEvent{shard: s, channel: ch, added: a, waiters: waiters})
}

// release closes the waits of the channels confirmed now.
func (s *shard) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, waiters := range s.waits {
		if h, ok := s.held[ch]; ok && h.on {
			for _, w := range waiters {
				close(w)
			}
			delete(s.waits, ch)
		}
	}
}

func (s *shard) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// onSubscription runs on the connection's reader goroutine: it notes the
// connection's count of subscriptions, for Stats, the shard channels it
// holds, for the publisher (roomSubs.heldSince), and the (s)unsubscribe
// pushes, ours and the unrequested ones alike.
func (s *shard) onSubscription(p rueidis.PubSubSubscription) {
	now := sinceStart(time.Now())
	s.readAt.Store(now)
	if p.Kind == "ssubscribe" {
		s.r.confirm(p.Channel)
	}
	n := p.Count
	if s.probing.Load() {
		n-- // the probe's channel, subscribed first
	}
	s.mu.Lock()
	s.setConfirmed(kindOf(p.Kind), max(n, 0))
	if p.Kind != "sunsubscribe" && p.Kind != "unsubscribe" {
		s.mu.Unlock()
		return
	}
	s.unsubs = append(s.unsubs, unsubPush{p.Channel, now})
	s.mu.Unlock()
	s.signal()
}

// setConfirmed moves the adapter's count of room subscriptions (Stats) to
// n held by this shard's connection; s.mu is held.
func (s *shard) setConfirmed(k subKind, n int64) {
	held := &s.r.a.stats.roomSubs
	held[s.confirmedKind].Add(-s.confirmed)
	held[k].Add(n)
	s.confirmed, s.confirmedKind = n, k
}

// run keeps the shard's connection, through the adapter's supervisor,
// until ctx ends. After each failure its channels count as lost (their next
// subscription is a resubscribe) and the manager is told, so that it reads
// the slot map again.
func (s *shard) run(ctx context.Context) {
	s.r.a.loops.run(ctx, loop{
		what:  "room channels' connection to a Redis master",
		attrs: []any{"master", s.addr},
		attempt: func(ctx context.Context, up func()) error {
			err := s.serve(ctx, up)
			if ctx.Err() != nil {
				return nil
			}
			for _, h := range s.held {
				if h.on {
					h.on, h.lost = false, true
				}
			}
			s.r.report(shardEvent{shard: s})
			return err
		},
		outage: func(down bool) {
			if down {
				s.r.down.Add(1)
			} else {
				s.r.down.Add(-1)
			}
		},
	})
	s.setProbeDead(false) // stopped: no longer a master of the node's
}

// serve holds one connection until it fails or ctx ends: it subscribes
// every held channel, then applies the changes as they come. It calls
// ready each time nothing is left to subscribe.
func (s *shard) serve(ctx context.Context, ready func()) error {
	node, ok := s.r.a.client.Nodes()[s.addr]
	if !ok {
		return fmt.Errorf("%s: %w", s.addr, errNoSuchNode)
	}
	dc, _ := node.Dedicate()
	s.r.a.conns.rooms.Add(1)
	defer func() { // after Close: no push comes any more
		s.r.a.conns.rooms.Add(-1)
		s.mu.Lock()
		s.setConfirmed(s.confirmedKind, 0)
		s.mu.Unlock()
	}()
	defer dc.Close()
	probe := *s.probe.Load()
	var lastRead atomic.Int64 // when the last message was read (sinceStart)
	lastRead.Store(sinceStart(time.Now()))
	defer func() {
		if ctx.Err() != nil {
			return
		}
		from := lastRead.Load()
		for _, h := range s.held {
			if h.on { // failed holding it: unread since the last read
				h.gapFrom = earliest(h.gapFrom, from)
				s.unreadFrom.Store(earliest(s.unreadFrom.Load(), from))
			}
		}
		s.mu.Lock()
		for _, u := range s.unsubs { // Redis dropped it before: unread since
			if h, ok := s.held[u.channel]; ok {
				h.gapFrom = earliest(h.gapFrom, u.at)
				s.unreadFrom.Store(earliest(s.unreadFrom.Load(), u.at))
			}
		}
		s.mu.Unlock()
	}()
	back := make(chan uint64, 1) // the probes read back
	onMessage := func(m rueidis.PubSubMessage) {
		now := sinceStart(time.Now())
		lastRead.Store(now)
		s.readAt.Store(now)
		if m.Channel != probe || probe == "" {
			s.r.a.in.onMessage(m)
			return
		}
		if n, ok := probeNumber(m.Message); ok {
			select {
			case back <- n:
			default:
			}
		}
	}
	failed := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: onMessage, OnSubscription: s.onSubscription})
	s.mu.Lock()
	s.unsubs = nil // of an earlier connection
	s.mu.Unlock()
	// The probe did not come back: the connection is closed at once, which
	// ends a command waiting on it, and serve returns why.
	dead := make(chan error, 1)
	kill := func(err error) {
		s.setProbeDead(true)
		dead <- err
		dc.Close()
		s.r.a.conns.closeTo(s.addr) // the publishes waiting on the client's connection to it fail, counted
	}
	if probe != "" {
		if err := s.subscribeProbe(ctx, dc, probe); err != nil {
			return err
		}
		if s.probing.Load() {
			// serve waits for the prober: a kill after serve returned would
			// mark a shard dead that nothing revives.
			pctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			defer func() { stop(); <-done }()
			if !s.r.a.spawn(func() { defer close(done); s.probeLoop(pctx, probe, &lastRead, back, kill) }) {
				close(done)
			}
		}
	}
	s.todo = s.todo[:0]
	for ch := range s.held {
		s.todo = append(s.todo, ch)
	}
	for {
		if err := s.apply(ctx, dc); err != nil {
			select {
			case err = <-dead:
			default:
			}
			return err
		}
		s.release()
		ready()
		s.setProbeDead(false)
		s.unreadFrom.Store(0) // every channel is subscribed, handed back with its gap, or dropped with it in s.gapFrom
		if from := s.gapFrom; from != 0 {
			s.gapFrom = 0
			restored := time.Now()
			_, _, lag := s.r.a.probeLag()
			lag = max(lag, time.Duration(s.lag.Load()))
			s.r.a.spawn(func() { s.r.a.sendRoomGaps(s.r.ctx, from, lag, restored) })
		}
		select {
		case <-s.changed:
		case err := <-failed:
			if err == nil {
				err = errors.New("connection closed")
			}
			return err
		case err := <-dead:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lastProof is when the shard's connections last read anything (readAt;
// 0: never), but no earlier than twice a probe's interval and wait before
// now: a probed connection silent that long has failed, and unreadFrom
// says since when; an unprobed one proves nothing either way, and a span
// back to a quiet connection's last message would count every broadcast
// since.
func (s *shard) lastProof(now time.Time) int64 {
	at := s.readAt.Load()
	if at == 0 {
		return 0
	}
	o := s.r.a.opts
	return max(at, sinceStart(now.Add(-2*(o.ProbeInterval+o.ProbeTimeout))))
}

// setProbeDead notes whether a probe declared the connection dead, for Ping.
func (s *shard) setProbeDead(dead bool) {
	if s.probeDead.CompareAndSwap(!dead, dead) {
		if dead {
			s.r.deadProbes.Add(1)
		} else {
			s.r.deadProbes.Add(-1)
		}
	}
}

// subscribeProbe subscribes the connection to its probe's channel, first,
// and notes whether it is (probing). A refusal (the slot moved since the
// manager picked the channel) leaves the connection without a probe; any
// other error means the connection failed.
func (s *shard) subscribeProbe(ctx context.Context, dc rueidis.DedicatedClient, channel string) error {
	ctx, cancel := context.WithTimeout(ctx, s.r.a.opts.RequestTimeout)
	defer cancel()
	s.probing.Store(true)
	err := dc.Do(ctx, s.r.rc.subscribeRoom(dc.B(), channel)).Error()
	if err == nil {
		return nil
	}
	s.probing.Store(false)
	if _, isRedis := rueidis.IsRedisErr(err); isRedis {
		s.r.a.log.Debug("room channels: the probe's channel refused; this connection goes unprobed", "master", s.addr, "err", err)
		return nil
	}
	return err
}

// probeLoop proves, until ctx ends, that the connection delivers: once it
// has read nothing for ProbeInterval it publishes a probe on channel and
// waits for back to read it. A probe that does not come back counts in
// Stats.ProbeFailures and goes to kill, which ends the connection. A
// publish that fails proves nothing either way (Redis is away: the
// connection notices by itself), and is tried again after ProbeInterval.
func (s *shard) probeLoop(ctx context.Context, channel string, lastRead *atomic.Int64, back chan uint64, kill func(error)) {
	o := s.r.a.opts
	reads := func() uint64 { return uint64(lastRead.Load()) }
	for n := uint64(1); ; {
		if quiet := time.Duration(sinceStart(time.Now()) - lastRead.Load()); quiet < o.ProbeInterval {
			if !sleepCtx(ctx, o.ProbeInterval-quiet) {
				return
			}
			continue
		}
		n++
		select { // an earlier probe read back late
		case <-back:
		default:
		}
		lag, err := s.r.a.probeRoundTrip(ctx, func(b rueidis.Builder) rueidis.Completed {
			return s.r.rc.publishRoom(b, channel, probePayload(n))
		}, n, back, reads, nil)
		if err == nil {
			s.lag.Store(int64(lag))
		}
		var lost errProbeLost
		switch {
		case ctx.Err() != nil || errors.Is(err, ErrClosed):
			return
		case errors.As(err, &lost):
			s.r.a.stats.probeFailures.Add(1)
			kill(errorf("delivery probe: %w", err))
			return
		case err != nil:
			if !sleepCtx(ctx, o.ProbeInterval) {
				return
			}
		}
	}
}

// apply unsubscribes the channels the manager took away, hands back those
// Redis dropped, and subscribes the rest.
func (s *shard) apply(ctx context.Context, dc rueidis.DedicatedClient) error {
	s.mu.Lock()
	adds, dels := s.adds, s.dels
	s.adds, s.dels = nil, nil
	s.mu.Unlock()

	var unsub []rueidis.Completed
	for ch := range dels {
		if h, ok := s.held[ch]; ok {
			delete(s.held, ch)
			// Its sockets left (or the manager moved it, carrying the gap
			// too): what they missed before still gets a notice.
			s.gapFrom = earliest(s.gapFrom, h.gapFrom)
			if h.on {
				unsub = append(unsub, s.r.rc.unsubscribeRoom(dc.B(), ch))
			}
		}
	}
	for len(unsub) > 0 {
		n := min(len(unsub), subscribeBatch)
		if err := s.do(ctx, dc, unsub[:n], nil); err != nil {
			return err
		}
		unsub = unsub[n:]
	}

	// Taken after our own SUNSUBSCRIBEs: a push for a channel still held
	// is Redis's doing (slot migrated, master demoted).
	s.mu.Lock()
	unsubs := s.unsubs
	s.unsubs = nil
	s.mu.Unlock()
	for _, u := range unsubs {
		if h, ok := s.held[u.channel]; ok && h.on {
			delete(s.held, u.channel)
			s.handBack(u.channel, added{lost: true, gapFrom: u.at})
		}
	}

	for ch, a := range adds {
		if h, ok := s.held[ch]; ok { // taken away and given back before this shard looked, or a gap merged in
			if h.on {
				s.gapFrom = earliest(s.gapFrom, a.gapFrom)
			} else {
				h.gapFrom = earliest(h.gapFrom, a.gapFrom)
			}
			continue
		}
		s.held[ch] = &heldChannel{lost: a.lost, gapFrom: a.gapFrom}
		if a.gapFrom != 0 {
			s.unreadFrom.Store(earliest(s.unreadFrom.Load(), a.gapFrom))
		}
		s.todo = append(s.todo, ch)
	}
	for len(s.todo) > 0 {
		n := min(len(s.todo), subscribeBatch)
		var cmds []rueidis.Completed
		var chans []string
		for _, ch := range s.todo[:n] {
			if h, ok := s.held[ch]; ok && !h.on {
				cmds = append(cmds, s.r.rc.subscribeRoom(dc.B(), ch))
				chans = append(chans, ch)
			}
		}
		if err := s.do(ctx, dc, cmds, chans); err != nil {
			return err
		}
		s.todo = s.todo[n:]
	}
	s.todo = nil
	return nil
}

// do pipelines cmds and waits for every answer. With chans (the channels
// of SSUBSCRIBE commands), each confirmed channel is marked subscribed and
// each refused one (MOVED, CLUSTERDOWN...) handed back to the manager. An
// error that is not Redis's answer means the connection failed.
func (s *shard) do(ctx context.Context, dc rueidis.DedicatedClient, cmds []rueidis.Completed, chans []string) error {
	if len(cmds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.a.opts.RequestTimeout)
	defer cancel()
	for i, res := range dc.DoMulti(ctx, cmds...) {
		err := res.Error()
		if _, isRedis := rueidis.IsRedisErr(err); err != nil && !isRedis {
			return err
		}
		if chans == nil {
			if err != nil {
				s.r.a.log.Debug("room channels: sunsubscribe", "master", s.addr, "err", err)
			}
			continue
		}
		h := s.held[chans[i]]
		if err != nil {
			s.r.a.log.Debug("room channels: ssubscribe refused", "master", s.addr, "channel", chans[i], "err", err)
			delete(s.held, chans[i])
			s.handBack(chans[i], added{lost: h.lost, gapFrom: h.gapFrom})
			continue
		}
		h.on = true
		if h.lost {
			h.lost = false
			s.r.a.stats.resubscribes.Add(1)
		}
		if h.gapFrom != 0 { // serve sends the notice once every channel is back
			s.gapFrom = earliest(s.gapFrom, h.gapFrom)
			h.gapFrom = 0
		}
	}
	return nil
}

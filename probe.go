package redisadapter

// The delivery probe: a node proves that its subscriptions still deliver,
// not only that its connections are open. A Redis that stops answering
// (SIGSTOP, a long fork), a half-open connection that a NAT dropped without
// a reset, a subscription a proxy dropped: in each, nothing is read and
// nothing fails, and rueidis notices only when its write timeout fires
// (ConnWriteTimeout, 10 s by default), if ever.
//
// So each namespace's prober publishes a probe on the node's own channel
// (protocol.probeChannel: "<key>-response#<nsp>#<uid>#" in classic mode,
// "<key>#<nsp>#<uid>#" otherwise) once that channel has been quiet for
// Options.ProbeInterval, and waits Options.ProbeTimeout for it to come back
// on the node's subscription. Only this node reads that channel: Node.js
// servers read their own, and the probe, JSON without a requestId, is
// dropped by any of them that would. Any message read on the channel
// proves delivery as well as a probe. While the namespace's subscriptions
// keep reading other messages, a late probe is waited for longer (up to
// busyProbeWait ProbeTimeouts): a connection busy with a burst is not a
// silent one, and closing it would lose the burst. But one that still
// reads while nothing the node sends on it reaches Redis (a middlebox
// dropping that flow one way) is silent too: in standalone and Sentinel
// deployments a late probe is followed by a second one, published aside on
// a connection of the client's pool. Redis answering it proves that Redis
// is reachable; Redis delivering it before the first proves that the first
// had not reached Redis (a subscriber reads in the order Redis executes
// the publishes), and the first is not waited for longer. A probe that
// does not come back declares the node's connections dead: Ping fails,
// Stats.ProbeFailures counts it, and every connection the client holds is
// closed, so that rueidis dials fresh ones and the supervised
// subscriptions (receive.go) are renewed on them (rueidis shares its
// connections between the subscriptions and the commands: none of them
// can be closed alone, and a connection that stopped delivering is not
// trusted with publishes either).
//
// In standalone and Sentinel deployments every subscription of a node but
// the room channels' (classic RoomSubscriptions) shares one connection,
// the first of rueidis's pipelined ones: the probe proves it inbound, and
// outbound the connection it goes out on, that one every other time, any
// of them (as the node's publishes go) otherwise. In a cluster the probe
// proves the node's own channel's connection only. The room channels'
// connections (sharded mode, classic RoomSubscriptions: one per master,
// shards.go) are probed each on its own, the same way: a probe on a
// channel of the node's own ("<key>-probe#<uid>#<n>#") whose slot that
// master serves, subscribed on that connection only; a probe that does not come back renews that
// connection alone (and counts in Stats.ProbeFailures; Ping fails until it
// serves again). A stream reader's XREAD is its probe: one unanswered
// ProbeInterval + ProbeTimeout after it was sent, on a connection that has
// read nothing since, is given up (streamreader.go); the readers are
// closed with the rest when a namespace's probe fails. In a Sentinel deployment the prober also asks
// for the server's role, and after a failed probe the sentinels for the
// master (checkRole), and closes the connections left to an old master
// (leaveOldMaster).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// probePrefix starts every probe's payload: `{"probe":<n>}`, and
// `{"probe":<n>,"aside":true}` for the one published aside (prober.probe).
const probePrefix = `{"probe":`

// asideSuffix ends the payload of a probe published aside.
const asideSuffix = `,"aside":true}`

// busyProbeWait bounds, in ProbeTimeouts, how long a probe is waited for
// while the subscriptions keep reading other messages.
const busyProbeWait = 5

// probeLags is how many round trips Stats.ProbeLagMax looks back over.
const probeLags = 64

// prober probes one namespace's subscription.
type prober struct {
	a       *Adapter
	ns      *namespace
	channel string

	lastProof atomic.Int64  // unix nanoseconds of the last message read on channel
	reads     atomic.Uint64 // messages read on any of the namespace's subscriptions
	// lastRead is when the last of those was read (sinceStart).
	lastRead atomic.Int64
	// gapFrom is when the namespace's subscriptions read last before one
	// that reads broadcasts or requests went down (lastRead then), until
	// they are all back (takeGaps); 0: none. Guarded by the subscription
	// tracker's mutex (noteGapStart and takeGaps run under it).
	gapFrom   int64
	waiting   atomic.Uint64 // the number of the probe in flight; 0: none
	back      chan uint64   // cap 1: the probe read back
	asideBack chan uint64   // cap 1: the probe published aside read back
	dead      atomic.Bool   // the last probe failed
	n         uint64        // the last probe's number; the loop's alone

	mu   sync.Mutex
	lags [probeLags]time.Duration // the last round trips, a ring
	next int
	last time.Duration
}

func newProber(a *Adapter, ns *namespace) *prober {
	p := &prober{a: a, ns: ns, channel: ns.proto.probeChannel(), back: make(chan uint64, 1), asideBack: make(chan uint64, 1)}
	p.lastProof.Store(time.Now().UnixNano())
	p.lastRead.Store(sinceStart(time.Now()))
	return p
}

// read sees a message routed to the namespace's responses, on rueidis's
// reader goroutine: on the probe channel it proves delivery, and hands the
// probe waited for to back, the one published aside to asideBack; it
// reports whether m is a probe, which goes no further. The probe published
// aside proves nothing by itself: it is read back to be compared with the
// probe, and leaves a probe that fails after it to be followed at once by
// the next (run waits for ProbeInterval of quiet).
func (p *prober) read(m rueidis.PubSubMessage) bool {
	if m.Channel != p.channel {
		return false
	}
	if n, ok := asideNumber(m.Message); ok {
		offer(p.asideBack, n, p.waiting.Load())
		return true
	}
	p.lastProof.Store(time.Now().UnixNano())
	if !strings.HasPrefix(m.Message, probePrefix) {
		return false
	}
	if n, ok := probeNumber(m.Message); ok {
		offer(p.back, n, p.waiting.Load())
	}
	return true
}

// offer gives n to back, if it is the number waited for and back has room.
func offer(back chan<- uint64, n, waiting uint64) {
	if n != waiting {
		return
	}
	select {
	case back <- n:
	default:
	}
}

// probePayload is probe n's message.
func probePayload(n uint64) string { return probePrefix + strconv.FormatUint(n, 10) + "}" }

// asidePayload is the message of probe n published aside.
func asidePayload(n uint64) string {
	return probePrefix + strconv.FormatUint(n, 10) + asideSuffix
}

// asideNumber is the number of the probe published aside whose message is
// payload.
func asideNumber(payload string) (uint64, bool) {
	rest, probe := strings.CutPrefix(payload, probePrefix)
	digits, aside := strings.CutSuffix(rest, asideSuffix)
	if !probe || !aside {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// probeNumber is the number of the probe whose message is payload.
func probeNumber(payload string) (uint64, bool) {
	if !strings.HasPrefix(payload, probePrefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(payload[len(probePrefix):], "}"), 10, 64)
	return n, err == nil
}

// run probes until ctx ends.
func (p *prober) run(ctx context.Context) {
	o := p.a.opts
	var lastRole time.Time // when the server's role was last checked
	checkRoles := p.a.conns.sentinel != nil
	for {
		quiet := time.Since(time.Unix(0, p.lastProof.Load()))
		if quiet < o.ProbeInterval {
			if !sleepCtx(ctx, o.ProbeInterval-quiet) {
				return
			}
			continue
		}
		if !p.a.subs.isLive() {
			// The subscriptions are being renewed: nothing to prove
			// until they are back (Ping fails meanwhile). After a failed
			// probe, a renewal that does not complete is stuck on a
			// connection dialed into the same fault (a handshake nobody
			// answers, which rueidis gives up only after its dial
			// timeout, and which a flow dropped by a NAT never answers
			// even once the network is back): the connections and dials
			// older than renewalWait are closed too, the younger ones
			// left to finish. With one data node, the heal watch dials
			// Redis meanwhile, and closes them as soon as it answers
			// (heal.go): they are given healLoopWaits renewalWaits then.
			if p.dead.Load() {
				wait, addr := p.renewalWait(), p.a.soleNode()
				age := wait
				if addr != "" {
					age *= healLoopWaits
					p.a.heal.tick(ctx, p.a.conns, addr, wait, p.a.spawn, func(n int) {
						p.a.log.Debug("delivery probe: Redis answers again; closed the connections dialed before", "namespace", p.ns.name, "closed", n)
					})
				}
				if n := p.a.conns.closeOlder(time.Now().Add(-age)); n > 0 {
					p.a.log.Debug("delivery probe: renewal stuck; closed the connections again", "namespace", p.ns.name, "closed", n)
				}
			}
			if !sleepCtx(ctx, minBackoff) {
				return
			}
			continue
		}
		if checkRoles {
			if n := p.a.leaveOldMaster(ctx); n > 0 {
				p.a.log.Info("left the old Sentinel master: closed the connections to it", "namespace", p.ns.name, "closed", n)
				if !sleepCtx(ctx, minBackoff) {
					return
				}
				continue
			}
		}
		started, closes := time.Now(), p.a.conns.closes.Load()
		lag, err := p.probe(ctx)
		// After a failure the role is checked, and the sentinels asked,
		// before the gate reopens: the renewed connections may have gone
		// back to the old master.
		if err == nil && checkRoles && (p.dead.Load() || time.Since(lastRole) >= roleCheckInterval) {
			lastRole = time.Now()
			err = p.checkRole(ctx, p.dead.Load())
			switch {
			case refusal(err):
				checkRoles = false // an ACL without ROLE: the probe alone, as before
				p.a.log.Warn("the server refused ROLE: a node left on a demoted Sentinel master is not detected (allow +role to this user)", "err", err)
				err = nil
			case errors.Is(err, context.DeadlineExceeded) && !p.dead.Load() && ctx.Err() == nil:
				// The probe has just proven delivery: a ROLE unanswered
				// within ProbeTimeout is behind the connection's backlog
				// (a slow reader, whose connection taking it for a failure
				// closed, losing the backlog), and says nothing of the
				// role. It is asked again after the next probe.
				p.a.log.Debug("ROLE unanswered after a probe came back; asked again after the next", "namespace", p.ns.name)
				lastRole, err = time.Time{}, nil
			}
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return // closing: the connections still send what is queued
		}
		if err == nil {
			p.record(lag)
			p.a.subs.forgetProbeFailures(started)
			if p.dead.Swap(false) {
				p.a.log.Info("delivery probe back", "namespace", p.ns.name, "lag", lag.Round(time.Microsecond))
			}
			continue
		}
		var lost errProbeLost
		isLost := errors.As(err, &lost)
		if !isLost && p.a.conns.closes.Load() != closes {
			// The PUBLISH failed on a connection the adapter closed
			// meanwhile (another namespace's failed probe, a stuck
			// renewal): no evidence of its own; the next probe tells.
			if !sleepCtx(ctx, minBackoff) {
				return
			}
			continue
		}
		p.a.stats.probeFailures.Add(1)
		p.a.subs.noteProbeFailure(isLost && lost.ownWay())
		closed := p.a.conns.closeAll()
		if !p.dead.Swap(true) {
			p.a.log.Warn("delivery not proven: renewing the connections to Redis", "namespace", p.ns.name, "err", err, "closed", closed)
		} else {
			p.a.log.Debug("delivery probe missed again", "namespace", p.ns.name, "err", err, "closed", closed)
		}
		// Let the subscriptions see their connections close before the
		// next probe.
		if !sleepCtx(ctx, minBackoff) {
			return
		}
	}
}

// renewalFloor is the least a renewal is given, after a failed probe,
// before its connections are closed again (prober.renewalWait). A renewal
// through the fault proxy takes 2-7 ms, but 50 ms was too little after
// Redis thawed from a 15 s SIGSTOP (-race): renewals were closed again and
// again, and broadcasts flowed 0.6-0.9 s after the thaw, with 11-18 lost
// unreported.
const renewalFloor = 100 * time.Millisecond

// renewalWait is how long a connection (or a dial) of a renewal after a
// failed probe may take before it is taken for stuck: renewalRoundTrips of
// the probe's usual round trip (a renewal is a dial, a TLS handshake, a
// HELLO and the subscriptions' replies: 4 or 5 round trips), at least
// renewalFloor and at most ProbeTimeout. On a fast network a stuck
// renewal is given up within about renewalFloor, so that a node follows a
// healed network that quickly; over a slow one (the round trip's median
// is hundreds of milliseconds) a renewal has the time it needs. While the
// fault lasts, the loops dial about once per renewalWait (a loop whose
// connection the prober closed tries again without a back-off:
// supervisor.closes), and so found a healed network about renewalWait/2
// after the heal, on average. With one data node the heal watch (heal.go)
// dials meanwhile, healInFlight times per renewalWait at first, sparser as
// the fault lasts, and closes the stuck renewal's connections when Redis
// answers: a node finds a healed network within renewalWait/healInFlight
// of the heal, 25 ms on a fast network (50 ms two seconds in), and the
// loops' connections are given healLoopWaits renewalWaits.
func (p *prober) renewalWait() time.Duration {
	_, median, _ := p.lag()
	return min(max(renewalRoundTrips*median, renewalFloor), p.a.opts.ProbeTimeout)
}

// renewalRoundTrips is how many probe round trips a renewal may take.
const renewalRoundTrips = 8

// roleCheckInterval is how often a node of a Sentinel deployment asks the
// server it publishes to for its role.
const roleCheckInterval = time.Second

// errNotMaster: the server a Sentinel client sends to is not the master.
type errNotMaster struct{ role string }

func (e errNotMaster) Error() string {
	return "the server this node publishes to has the role " + e.role + ", not master"
}

// errStaleMaster: the sentinels name another master than the server a
// Sentinel client sends to.
type errStaleMaster struct{ at, master string }

func (e errStaleMaster) Error() string {
	return "this node publishes to " + e.at + ", the sentinels name " + e.master + " as the master"
}

// checkRole fails when the server the client sends to is not a master, and,
// with askSentinels (after a failed probe), when the sentinels name another
// server as the master. A probe cannot tell: after a failover, a node whose
// connections went back to the old master stays there, and a server
// delivers what is published on it to its own subscribers, the probe
// included, and to nobody else. ROLE alone does not tell either while the
// old master still calls itself master (for seconds after it thaws or
// rejoins, until the sentinels demote it): what the node publishes there
// meanwhile is lost, stream entries included (the old master drops them
// when it resyncs). Sentinels that cannot be asked do not fail the check:
// ROLE is then the only one. rueidis moves to the new master when its
// sentinel connection tells it, or at its next periodic refresh
// (sentinelRefreshInterval); when this check fails, the sentinel
// connection is closed, which makes rueidis ask a sentinel again at once,
// and the others with the failed probe.
func (p *prober) checkRole(ctx context.Context, askSentinels bool) error {
	ctx, cancel := context.WithTimeout(ctx, p.a.opts.ProbeTimeout)
	defer cancel()
	role, err := p.a.client.Do(ctx, p.a.client.B().Role().Build()).ToArray()
	if err != nil {
		return err
	}
	if len(role) == 0 {
		p.a.conns.closeSentinels()
		return errNotMaster{role: "server without a role"}
	}
	if r, err := role[0].ToString(); err != nil || r != "master" {
		p.a.conns.closeSentinels()
		return errNotMaster{role: fmt.Sprintf("%q", r)}
	}
	if !askSentinels {
		return nil
	}
	master, err := sentinelMaster(ctx, p.a.conns.sentinel, p.a.opts.ProbeTimeout)
	if err != nil {
		p.a.log.Debug("the sentinels could not be asked for the master; ROLE says master", "err", err)
		return nil
	}
	if at := p.a.soleNode(); at != "" && at != master {
		p.a.conns.closeSentinels()
		return errStaleMaster{at: at, master: master}
	}
	return nil
}

// soleNode is the address of the one data node the client sends to (a
// standalone server, the master a Sentinel client sends to), or "" when
// it has none (a Sentinel client between masters) or several (a cluster).
func (a *Adapter) soleNode() string {
	nodes := a.client.Nodes()
	if len(nodes) != 1 {
		return ""
	}
	for addr := range nodes {
		return addr
	}
	return ""
}

// errProbeLost: the probe was published but did not come back in time.
type errProbeLost struct {
	timeout time.Duration
	// unreached: the subscriptions kept reading, but Redis did not answer
	// the probe published aside, on another connection, either; heard:
	// they read after that one went out.
	unreached, heard bool
	// overtaken: the probe published aside came back, this one did not.
	overtaken bool
}

// ownWay reports whether the probe was lost on this node's own way to
// Redis, which served the others meanwhile: Redis delivered the probe
// published aside first, or the subscriptions kept reading what the
// others publish after that one went out unanswered (a Redis frozen for
// everyone sends nothing new; what it had sent before it froze is read
// within moments).
func (e errProbeLost) ownWay() bool { return e.overtaken || e.unreached && e.heard }

func (e errProbeLost) Error() string {
	switch {
	case e.overtaken:
		return "the probe did not come back within " + e.timeout.String() + ", but the one published after it on another connection did: what this node sends on the connection the probe went out on does not reach Redis (or waits there behind more than ProbeTimeout/2 of its own sends)"
	case e.unreached:
		return "the probe did not come back within " + e.timeout.String() + ", and Redis did not answer the one published aside on another connection either"
	}
	return "the probe did not come back within " + e.timeout.String()
}

// probe publishes one probe and waits for it: its round trip, or why it
// failed.
func (p *prober) probe(ctx context.Context) (time.Duration, error) {
	p.n++
	n := p.n
	for _, back := range []chan uint64{p.back, p.asideBack} { // an earlier probe read back late
		select {
		case <-back:
		default:
		}
	}
	p.waiting.Store(n)
	defer p.waiting.Store(0)
	m := message{channel: p.channel, payload: []byte(probePayload(n))}
	build := func(b rueidis.Builder) rueidis.Completed { return p.ns.proto.command(b, m, seqNo{}) }
	// In a cluster both probes go to the node serving the command's slot
	// (the namespace's, or the channel's for an SPUBLISH), which executes
	// them in the order they came and passes them on over the cluster bus,
	// one link per pair of nodes, in that order: the order in which they
	// come back proves as much as on one server (but while the slot moves,
	// a failover: a probe then found lost renews the connections once
	// more). Without the one aside, a late probe on a busy connection was
	// waited for as behind a burst: a node whose way to the cluster was
	// blackholed one way, still reading the others' broadcasts, was found
	// 4.4 s in.
	am := message{channel: p.channel, payload: []byte(asidePayload(n))}
	aside := &probeAside{
		publish: func(ctx context.Context) error {
			return p.a.publishAside(ctx, func(b rueidis.Builder) rueidis.Completed { return p.ns.proto.command(b, am, seqNo{}) })
		},
		back:   p.asideBack,
		behind: p.a.pub.inFlight.Load,
	}
	if p.a.client.Mode() != rueidis.ClientModeCluster {
		// The probe proves the connection it goes out on. rueidis (v1.0)
		// spreads the node's commands over its pipelined connections (two
		// on two cores, four on four and more), but sends a command
		// without a slot on the first, which the subscriptions ride: every
		// other probe goes there, so that a fault of that connection alone
		// is found by the next probe but one. (An SPUBLISH, sharded
		// pub/sub, has its channel's slot, and goes as the others do; in a
		// cluster a command without a slot goes to a node at random.)
		if n%2 == 0 {
			build = func(b rueidis.Builder) rueidis.Completed {
				cmd := p.ns.proto.command(b, m, seqNo{})
				if args := cmd.Commands(); len(args) == 3 && args[0] == "PUBLISH" {
					return b.Publish().Channel(args[1]).Message(args[2]).Build()
				}
				return cmd
			}
		}
	}
	return p.a.probeRoundTrip(ctx, build, n, p.back, p.reads.Load, aside)
}

// probeAside is how probeRoundTrip tells a late probe that never reached
// Redis from one queued behind a burst: a second probe, published aside.
type probeAside struct {
	// publish publishes the probe aside, on another connection than the
	// probe's: an error only when Redis did not answer.
	publish func(context.Context) error
	// back gives the number of the probe published aside once read back.
	back <-chan uint64
	// behind is the size of the node's own publishes in flight (the
	// publisher's batch), which the probe may follow on its connection.
	behind func() int64
}

// probeBehindLimit is the most of the node's own publishes in flight
// before the probe that still lets the probe published aside, read back
// first, prove the probe lost. Redis executes a pipeline a read (16 KiB)
// at a time and serves its other clients in between: behind a large
// batch the probe is executed after the one aside even when nothing is
// wrong, for as long as that batch takes to execute.
const probeBehindLimit = 64 << 10

// publishAside publishes the command build makes on a connection of the
// client's pool, not on the pipelined ones the probe and the subscriptions
// ride: an error only when Redis did not answer (an error reply is an
// answer).
//
// It is tried twice: closeAll closes the pooled connection under rueidis,
// which hands it out once more and drops it when the command fails on it
// at once; the second try dials afresh.
func (a *Adapter) publishAside(ctx context.Context, build func(rueidis.Builder) rueidis.Completed) error {
	var err error
	for range 2 {
		dc, release := a.client.Dedicate() // may dial, bounded by rueidis's dial timeout
		err = dc.Do(ctx, build(dc.B())).Error()
		release()
		if _, answered := rueidis.IsRedisErr(err); answered || err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return err
}

// probeRoundTrip publishes probe n with the command build makes and waits,
// up to ProbeTimeout, for back to give n: the round trip, or why it failed
// (errProbeLost: published, not read back). While reads keeps changing
// (the subscriptions read other messages) a late probe is waited for up to
// busyProbeWait ProbeTimeouts: a connection busy with a burst is not a
// silent one, and closing it would lose the burst.
//
// But reads alone cannot tell a reply queued behind a backlog from a
// PUBLISH that never reached Redis (a connection dropped one way still
// reads what others publish). So, when aside is set, a probe late by
// ProbeTimeout/4 is followed by a second one published aside, on another
// connection, and again at each further ProbeTimeout:
//   - each further ProbeTimeout is waited for only if Redis answered the
//     last one published aside;
//   - Redis delivers to a subscriber in the order it executes the
//     publishes, so the one aside read back before the probe proves that
//     the probe had not reached Redis when that one was executed (an
//     inbound burst delays both, in order). The probe is given a grace of
//     ProbeTimeout/4 more, and fails if it is still missing.
//
// The grace is for what the node sent on the probe's connection just
// before the probe: a few commands of other callers, and at most one
// batch of the publisher's (it sends one at a time). Redis executes a
// pipeline a read at a time, serving its other clients in between, so
// a probe behind a batch of more than probeBehindLimit is executed after
// the one aside for as long as the batch takes: then the order proves
// nothing, and the probe is waited for as one behind a burst. Behind less,
// the probe has had ProbeTimeout/4, the round trip of the one aside and
// the grace, at least ProbeTimeout/2 in all, to get through.
func (a *Adapter) probeRoundTrip(ctx context.Context, build func(rueidis.Builder) rueidis.Completed, n uint64, back <-chan uint64, reads func() uint64, aside *probeAside) (time.Duration, error) {
	timeout := a.opts.ProbeTimeout
	loopCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, busyProbeWait*timeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(timeout)
	defer tick.Stop()
	last := reads()
	cmd := build(a.client.B())
	// Read before the probe goes out: what it may be queued behind.
	behindBatch := aside != nil && aside.behind() > probeBehindLimit
	// The PUBLISH runs on its own goroutine: rueidis may hold a command
	// past its context while it dials a connection another caller
	// started, and the bound must hold whatever it does.
	published := make(chan error, 1)
	if !a.spawnUntilClientCloses(func() { published <- a.client.Do(ctx, cmd).Error() }) {
		return 0, ErrClosed
	}
	// The probe published aside outlives this one (bounded by
	// ProbeTimeout, and a dial by rueidis's dial timeout): a connection it
	// dials is kept for the next one rather than dropped half open when the
	// probe comes back.
	var asideAt, graceOver <-chan time.Time
	var asideRead <-chan uint64
	if aside != nil {
		t := time.NewTimer(timeout / 4)
		defer t.Stop()
		asideAt, asideRead = t.C, aside.back
	}
	var asideErr <-chan error // the probe published aside, in flight
	reached := false          // Redis answered the last one
	var readsAside uint64     // reads when the last one went out
	publishAside := func() bool {
		ch := make(chan error, 1)
		asideErr, reached, readsAside = ch, false, reads()
		return a.spawnUntilClientCloses(func() {
			pctx, cancel := context.WithTimeout(loopCtx, timeout)
			defer cancel()
			ch <- aside.publish(pctx)
		})
	}
	lost := func(e errProbeLost) error {
		e.timeout = time.Since(start).Round(time.Millisecond)
		return e
	}
	for {
		select {
		case err := <-published:
			if err != nil {
				return 0, err
			}
			published = nil // the answer to the PUBLISH may come after the probe
		case got := <-back:
			if got == n {
				return time.Since(start), nil
			}
		case <-asideAt:
			asideAt = nil
			if !publishAside() {
				return 0, ErrClosed
			}
		case err := <-asideErr:
			asideErr, reached = nil, err == nil
		case got := <-asideRead:
			if got == n && graceOver == nil && !behindBatch {
				graceOver = time.After(timeout / 4)
			}
		case <-graceOver:
			return 0, lost(errProbeLost{overtaken: true})
		case <-tick.C:
			now := reads()
			busy := now != last
			last = now
			switch {
			case !busy:
				return 0, lost(errProbeLost{})
			case aside == nil:
				continue // busy: wait one more ProbeTimeout
			case !reached:
				return 0, lost(errProbeLost{unreached: true, heard: now != readsAside})
			}
			if !publishAside() { // busy, and Redis answers: once more
				return 0, ErrClosed
			}
		case <-ctx.Done():
			return 0, lost(errProbeLost{})
		}
	}
}

func (p *prober) record(lag time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = lag
	p.lags[p.next] = lag
	p.next = (p.next + 1) % probeLags
}

// lag returns the last round trip, and the median and the largest of the
// last probeLags.
func (p *prober) lag() (last, median, maxLag time.Duration) {
	p.mu.Lock()
	lags := make([]time.Duration, 0, probeLags)
	for _, l := range p.lags {
		if l > 0 { // 0: not probed yet
			lags = append(lags, l)
		}
	}
	last = p.last
	p.mu.Unlock()
	if len(lags) == 0 {
		return last, 0, 0
	}
	slices.Sort(lags)
	return last, lags[len(lags)/2], lags[len(lags)-1]
}

// unproven is the error of an operation refused because the namespace's
// delivery is not proven: what Ping, the publisher's gate and a broadcast
// with acknowledgements say.
func (p *prober) unproven() error {
	return fmt.Errorf("%w: namespace %q: delivery not proven (no probe back within %v, or a Sentinel server that is not the master): renewing the connections to Redis",
		ErrUnavailable, p.ns.name, p.a.opts.ProbeTimeout)
}

// healthy reports whether the namespace's subscription delivered lately:
// the last probe did not fail, and the last proof is not older than the
// longest a probe may take (the probe loop itself could be stuck).
func (p *prober) healthy() bool {
	o := p.a.opts
	return !p.dead.Load() && time.Since(time.Unix(0, p.lastProof.Load())) <= o.ProbeInterval+(busyProbeWait+1)*o.ProbeTimeout
}

// probeLag is the largest last round trip over the namespaces, and the
// largest over their recent probes.
func (a *Adapter) probeLag() (last, median, maxLag time.Duration) {
	for _, p := range a.probes {
		l, med, m := p.lag()
		last, median, maxLag = max(last, l), max(median, med), max(maxLag, m)
	}
	return last, median, maxLag
}

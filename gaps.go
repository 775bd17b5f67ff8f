package redisadapter

// Gaps: what a node may have missed while it could not read. A pub/sub
// message reaches the subscribers connected when Redis runs the PUBLISH,
// and Redis's answer counts a subscriber whose connection is still open on
// its side as reached: a node whose subscriptions went silent (its way
// from Redis blackholed) or were renewed (closed by its own failed probe,
// cut off by Redis) misses what the others published meanwhile, and
// neither they nor it can tell from the answers (publish.go's reach counts
// compare only after the publisher's own outage). So once its
// subscriptions are back (and the settle delay passed, for the others to
// have renewed theirs), the node tells the others the span it could not
// read, for each namespace that lost a subscription to its broadcasts or
// requests, in a gap notice (typeGap, a request type of ours that Node's
// adapters ignore), and each counts what it published in that span on the
// channels every node's subscriptions read in Stats.PublishFailures. A
// room channels' connection (a node's SUBSCRIBE per room, sharded mode's
// room channels: shards.go) sends a notice of its own once the channels
// it could not read are subscribed again, on the same master or, moved by
// a failover or a slot migration, on their new one (from the old
// connection's last read): those are counted apart,
// and all of them, not only the rooms on that master or held by that
// node (the publisher knows neither).
//
// The span goes as durations before the notice was sent, read against the
// receiver's clock when it arrives: hosts' clocks differ by more than a
// notice's transit. It begins at the last message the namespace's
// subscriptions read before the first of them went down, less the largest
// probe round trip (publish to read back: what was published that long
// before may still have been on its way), and ends when they were all
// back; the receiver reads it from the notice's arrival (not from when
// its worker got to it), widened by its own largest round trip for the
// notice's transit.
// Counts are kept per sentSlot and taken whole slots at a time, and a
// count taken is forgotten, so that several nodes' notices of one outage
// count each broadcast once: a count may take in a few broadcasts
// published just outside the span (reported failures may exceed the
// losses), and misses none inside it within the horizon.
//
// Not covered: with Sentinel and RoomSubscriptions, a broadcast from a
// node whose client follows a failover before this one's does (its own
// probes still reach the old master meanwhile: docs/delivery.md); streams
// mode, which loses nothing; an Emitter's broadcasts (it
// reads no requests); a Node.js server, which sends no notice and ignores
// ours; and a notice the others miss (a Redis every node lost at once,
// and that they are not back from when it is sent).

import (
	"context"
	"errors"
	"sync"
	"time"
)

const (
	// sentSlot is how finely a namespace's sends are counted.
	sentSlot = 20 * time.Millisecond
	// sentSlots is how many slots a namespace keeps: gaps reaching back
	// further than sentSlots*sentSlot (a minute) count what is kept.
	sentSlots = 3000
)

// gapLogs are a namespace's counts of what this node published, by who
// reads it.
type gapLogs struct {
	all   sentLog // read by every node's subscriptions to the namespace (readersAll)
	rooms sentLog // read on the room channels' connections (readersRoom)
}

// of is the log of messages read by r; nil for none (and from nil).
func (g *gapLogs) of(r readers) *sentLog {
	switch {
	case g == nil:
		return nil
	case r == readersAll:
		return &g.all
	case r == readersRoom:
		return &g.rooms
	}
	return nil
}

// sentLog counts messages of a namespace Redis took, per sentSlot, for the
// last sentSlots: what a gap notice may ask about. Safe for concurrent use.
type sentLog struct {
	mu    sync.Mutex
	slots []sentCount // ring, by slot number; made by the first record
}

type sentCount struct {
	slot int64 // the slot's number: its start in sinceStart time, over sentSlot
	n    uint64
}

// record counts one message sent at at (sinceStart, never before the
// process started: a time before is not counted).
func (l *sentLog) record(at int64) {
	if at < 0 {
		return
	}
	s := at / int64(sentSlot)
	l.mu.Lock()
	if l.slots == nil {
		l.slots = make([]sentCount, sentSlots)
	}
	c := &l.slots[s%sentSlots]
	if c.slot != s {
		*c = sentCount{slot: s}
	}
	c.n++
	l.mu.Unlock()
}

// take returns, and forgets, the count of the messages sent in the slots
// from and to fall in, and those between (sinceStart times; now is the
// present). partial: the span reaches back past what is kept.
func (l *sentLog) take(from, to, now int64) (n uint64, partial bool) {
	if oldest := now - int64(sentSlots-1)*int64(sentSlot); from < oldest {
		from, partial = oldest, true
	}
	from, to = max(from, 0), min(to, now)
	if to < from {
		return 0, partial
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slots == nil {
		return 0, partial
	}
	for s := from / int64(sentSlot); s <= to/int64(sentSlot); s++ {
		if c := &l.slots[s%sentSlots]; c.slot == s {
			n += c.n
			c.n = 0
		}
	}
	return n, partial
}

// gapData is a gap notice's data on the wire, in both protocols that send
// one: the span the node could not read, in milliseconds before the notice
// was sent, and whether on its room channels' connection.
type gapData struct {
	Since *int64 `json:"since,omitempty"`
	Until *int64 `json:"until,omitempty"`
	// RoomChannels: not "rooms", which a sharded message's data has.
	RoomChannels bool `json:"roomChannels,omitempty"`
}

func gapDataOf(r request) gapData {
	// Rounded outwards: the span is not narrowed.
	since := int64((r.gapSince + time.Millisecond - 1) / time.Millisecond)
	until := int64(r.gapUntil / time.Millisecond)
	return gapData{Since: &since, Until: &until, RoomChannels: r.gapRooms}
}

// span checks a decoded notice's span.
func (g gapData) span() (since, until time.Duration, err error) {
	const limit = int64(24 * time.Hour / time.Millisecond) // far past any span kept, and no overflow
	switch {
	case g.Since == nil || g.Until == nil:
		return 0, 0, malformed("gap notice without since and until")
	case *g.Until < 0 || *g.Since < *g.Until || *g.Since > limit:
		return 0, 0, malformed("gap notice span %d..%d ms", *g.Since, *g.Until)
	}
	return time.Duration(*g.Since) * time.Millisecond, time.Duration(*g.Until) * time.Millisecond, nil
}

// noteGapStart notes, when channel (a subscription's channel or pattern)
// goes down, where the gap of its namespace begins: at the namespace's
// last read, unless a gap is open already. A channel of answers opens
// none: an answer missed ends its request in a timeout, which says so. It
// runs under the subscription tracker's mutex.
func (a *Adapter) noteGapStart(channel string) {
	r, ok := a.in.routes[channel]
	if !ok || r.queue == toResponses || r.ns.probe == nil || r.ns.probe.gapFrom != 0 {
		return
	}
	r.ns.probe.gapFrom = r.ns.probe.lastRead.Load()
}

// gap is a namespace's span not read: from its last read before (less the
// largest probe round trip), until the subscriptions were back.
type gap struct {
	ns   *namespace
	from int64 // sinceStart
}

// takeGaps returns, and closes, the namespaces' open gaps, once every
// subscription is back. It runs under the subscription tracker's mutex: a
// subscription lost again before the notices go opens a gap of its own.
func (a *Adapter) takeGaps() []gap {
	var gaps []gap
	for _, p := range a.probes {
		if p.gapFrom == 0 {
			continue
		}
		_, _, lagMax := p.lag()
		gaps = append(gaps, gap{ns: p.ns, from: p.gapFrom - int64(lagMax)})
		p.gapFrom = 0
	}
	return gaps
}

// sendGaps sends the gap notices of an outage that ended at restored.
func (a *Adapter) sendGaps(ctx context.Context, restored time.Time, gaps []gap) {
	for _, g := range gaps {
		a.sendGap(ctx, g.ns, g.from, restored, false)
	}
}

// sendRoomGaps sends each namespace's gap notice for the room channels,
// once a room channels' connection holds again, at restored, the channels
// unread since from (sinceStart), widened by lag, the largest probe round
// trip known.
func (a *Adapter) sendRoomGaps(ctx context.Context, from int64, lag time.Duration, restored time.Time) {
	for _, p := range a.probes {
		a.sendGap(ctx, p.ns, from-int64(lag), restored, true)
	}
}

// sendGap sends ns's gap notice of the span from (sinceStart) to until:
// best effort, as an answer (a failure is counted and logged, and
// reported to no caller).
func (a *Adapter) sendGap(ctx context.Context, ns *namespace, from int64, until time.Time, rooms bool) {
	if !a.proto.asksFor(typeGap) {
		return
	}
	now := time.Now()
	r := request{uid: a.uid, typ: typeGap, gapRooms: rooms,
		gapSince: time.Duration(max(sinceStart(now)-from, 0)), gapUntil: max(now.Sub(until), 0)}
	r.gapSince = max(r.gapSince, r.gapUntil)
	m, err := a.pub.encodeRequest(ns.proto, r)
	if err == nil {
		err = a.pub.publishAnswer(ctx, ns.proto, m)
	}
	if err != nil && !errors.Is(err, ErrClosed) {
		a.log.Warn("could not tell the other nodes what this node may have missed", "namespace", ns.name, "err", err)
	}
}

// countGap counts failed what this node published in the span another node
// could not read, r being its notice, which arrived at arrived (sinceStart;
// 0: now). The span is read from its arrival: the queue it waited in
// (behind a slow ServerSideEmit handler, say) does not move it.
func (a *Adapter) countGap(ns *namespace, r request, arrived int64) {
	now := sinceStart(time.Now())
	if arrived == 0 {
		arrived = now
	}
	_, _, lagMax := a.probeLag()
	sent, what := ns.sent.of(readersAll), "broadcasts"
	if r.gapRooms {
		sent, what = ns.sent.of(readersRoom), "broadcasts to a room's channel"
	}
	n, partial := sent.take(arrived-int64(r.gapSince+lagMax), arrived-int64(r.gapUntil), now)
	if n == 0 {
		return
	}
	a.pub.failures.Add(n)
	a.log.Warn(what+" published while another node could not read them: counted failed",
		"node", r.uid, "namespace", ns.name, "failed", n, "gap", (r.gapSince - r.gapUntil).Round(time.Millisecond), "older_not_counted", partial)
}

// earliest is the earlier of two instants (sinceStart), 0 being none.
func earliest(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

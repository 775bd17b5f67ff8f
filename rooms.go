package redisadapter

// Room subscriptions: the channels "<key>#<nsp>#<room>#", which a node
// subscribes to while it has local sockets in the room: SSUBSCRIBE for the
// sharded protocol (public rooms only), SUBSCRIBE for the classic one with
// RoomSubscriptions (socket-id rooms too). Outside a cluster the one server
// is the only shard; with Sentinel, the manager follows the shared client
// to the new master (dedicated connections do not follow a failover).
//
// go-socket.io does not report joins, so a manager goroutine polls the
// rooms: every roomSyncInterval while they change or sockets connect, less
// often (up to maxRoomSyncInterval) while they do not. Adapter.Join asks the
// manager directly and waits for the subscriptions' confirmation (join.go).
// An idle tick costs the slice server.Rooms returns and a sum of the rooms'
// hashes: only when that fingerprint differs from
// the last one are the rooms compared with those held (a map lookup each,
// which at 10,000 rooms cost as much again as server.Rooms), and the held
// rooms walked for leavers only when fewer were seen than are held. A
// room's channel name and slot are computed once, when it is first seen.
//
// The channels are subscribed as centrifuge's Redis broker does, not with
// one Receive (and one goroutine) per room: one dedicated pub/sub
// connection per master, a shard, on which (S)SUBSCRIBE commands are
// pipelined in batches with DoMulti, one channel per command because one
// SSUBSCRIBE may not mix slots. rueidis resolves each command when its
// confirmation push arrives, or with the master's error (MOVED). The
// connection is Nodes()[master].Dedicate(), a single-node dedicated client
// (the cluster client's own panics on commands of different slots), with
// PubSubHooks: messages reach a.onMessage on the connection's reader
// goroutine, which finds the room's namespace in a sync.Map and so never
// waits for the manager. Goroutines: the manager, plus one per shard and
// rueidis's two per connection, whatever the number of rooms.
//
// Failures: a shard whose connection breaks reconnects with back-off,
// re-subscribes all its channels (each counts in Stats.Resubscribes) and
// tells the manager, which re-reads the slot map (CLUSTER SLOTS, with
// back-off too) and moves the channels whose slot has another master now
// (a failover); the node's subscriptions being down makes it read the map
// too. A failed master's slots are then sent to the promoted replica by the
// rerouter (reroute.go), until rueidis's own map, which it refreshes only
// after a random delay of up to a second, has it. A MOVED answer or an
// unrequested sunsubscribe (the slot migrated, the master was demoted)
// hands a channel back to the manager the same way. Each shard logs one
// warning per outage.

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// roomSyncInterval is how often the rooms are compared with the room
// subscriptions while they change: a room a socket just joined with
// conn.Join is subscribed within this interval (Node subscribes
// asynchronously too). Each comparison that finds no change doubles the
// interval, up to maxRoomSyncInterval; a change, or a socket connecting,
// brings it back. (Adapter.Join needs no polling.)
const (
	roomSyncInterval    = 50 * time.Millisecond
	maxRoomSyncInterval = 200 * time.Millisecond
)

// masterCheckInterval is how often, outside a cluster, the manager asks
// the shared client which server is the master now (Sentinel failovers).
const masterCheckInterval = time.Second

const (
	// subscribeBatch bounds the commands of one DoMulti, so a shard with
	// many channels re-subscribes in round trips of bounded size.
	subscribeBatch = 512
	// Back-off of slot map reads (a shard reconnects as every loop does,
	// through the supervisor): while a master is away the map is read
	// every 20 to 50 ms, so that its failover is followed that soon.
	minSlotsBackoff, maxSlotsBackoff = 20 * time.Millisecond, 50 * time.Millisecond
	slotCount                        = 16384
)

var errNoSuchNode = errors.New("not among the cluster client's nodes")

// roomSubs is the manager: it owns every field but mu and events, and runs
// on one goroutine (run).
type roomSubs struct {
	a   *Adapter
	rc  roomChannels
	ctx context.Context // ends the manager and its shards

	held      map[*namespace]*heldRooms
	seed      maphash.Seed
	byChannel map[string]*roomSub
	shards    map[string]*shard // by master address

	slots       []string // slot -> master address; nil until first read
	needSlots   bool     // a channel waits for a master, or a shard failed
	nextRead    time.Time
	slotsWait   backoff
	lastRead    time.Time
	slotsFailed bool // the last read failed: the next success is logged

	lastMasterCheck time.Time
	rerouting       bool // a.reroute sends some slots to a new master

	mu     sync.Mutex
	events []shardEvent  // from the shards
	joins  []roomJoin    // from Adapter.Join
	wake   chan struct{} // cap 1: events or joins are waiting

	confirmedMu sync.Mutex
	confirmed   map[string]time.Time // held channel -> its first confirmation (zero: none yet), for heldSince

	down       atomic.Int32 // shards whose connection is down now, for Ping
	deadProbes atomic.Int32 // shards whose connection a probe declared dead, not yet down
}

// holding notes that the manager holds ch from now on (held), or no
// longer does.
func (r *roomSubs) holding(ch string, held bool) {
	r.confirmedMu.Lock()
	defer r.confirmedMu.Unlock()
	if !held {
		delete(r.confirmed, ch)
	} else if _, ok := r.confirmed[ch]; !ok {
		r.confirmed[ch] = time.Time{}
	}
}

// confirm notes that a shard's connection confirmed ch: the first time
// since the manager holds it, ch is held from now on (heldSince).
func (r *roomSubs) confirm(ch string) {
	r.confirmedMu.Lock()
	defer r.confirmedMu.Unlock()
	if since, ok := r.confirmed[ch]; ok && since.IsZero() {
		r.confirmed[ch] = time.Now()
	}
}

// heldSince reports whether the manager has held the room channel ch since
// before at, confirmed by Redis then (and renewed since if a connection
// was lost).
func (r *roomSubs) heldSince(ch string, at time.Time) bool {
	r.confirmedMu.Lock()
	defer r.confirmedMu.Unlock()
	since, ok := r.confirmed[ch]
	return ok && !since.IsZero() && since.Before(at)
}

// heldRooms are the rooms of a namespace with a channel subscription.
type heldRooms struct {
	rooms map[string]*roomSub
	// seen fingerprints the rooms (public and private) the last comparison
	// saw: the sum of their hashes, and their number.
	seen  uint64
	count int
}

// roomSub is one held room's channel.
type roomSub struct {
	ns      *namespace
	channel string
	slot    uint16
	shard   *shard // nil while its master is unknown
	lost    bool   // it was subscribed before: its next subscription is a resubscribe
	gapFrom int64  // as heldChannel's: moved, unread since (0: not)
	// waiters are closed once the channel is confirmed; the manager keeps
	// them while shard is nil, the shard otherwise.
	waiters []chan struct{}
}

// shardEvent is a shard handing channel back (MOVED, or dropped by Redis),
// with the Joins waiting for it, or, with channel "", reporting that its
// connection failed.
type shardEvent struct {
	shard   *shard
	channel string
	added   // the channel's state for its next shard
	waiters []chan struct{}
}

// roomJoin asks the manager to hold rooms of ns now (the sockets joined
// them already) and to close each of waits, if any, once the room's
// channel is confirmed; rooms without a channel need no wait.
type roomJoin struct {
	ns    *namespace
	rooms []string
	waits []chan struct{} // one per room
}

func newRoomSubs(ctx context.Context, a *Adapter, rc roomChannels) *roomSubs {
	r := &roomSubs{
		a: a, rc: rc, ctx: ctx,
		held:      make(map[*namespace]*heldRooms),
		seed:      maphash.MakeSeed(),
		byChannel: make(map[string]*roomSub),
		shards:    make(map[string]*shard),
		slotsWait: backoff{min: minSlotsBackoff, max: maxSlotsBackoff},
		wake:      make(chan struct{}, 1),
		confirmed: make(map[string]time.Time),
	}
	for _, ns := range a.namespaces {
		r.held[ns] = &heldRooms{rooms: make(map[string]*roomSub)}
	}
	return r
}

// run keeps the room subscriptions in line with the rooms until r.ctx
// ends; the shards it started end with it.
func (r *roomSubs) run() {
	ctx := r.ctx
	interval := roomSyncInterval
	tick := time.NewTimer(interval)
	defer tick.Stop()
	// Rooms are compared on ticks only: a wake (events, joins, a socket
	// connecting) does not make a storm of connections poll harder.
	for poll := true; ; {
		if poll {
			if r.sync() || r.rerouting {
				interval = roomSyncInterval
			} else {
				interval = min(2*interval, maxRoomSyncInterval)
			}
			tick.Reset(interval)
			if r.rerouting {
				r.rerouting = r.a.reroute.check(ctx, r.a.opts.Key)
			}
		}
		if r.handleJoins() && interval > roomSyncInterval {
			interval = roomSyncInterval // sockets are joining: poll fast
			tick.Reset(interval)
		}
		r.handleEvents()
		r.checkMaster()
		if !r.a.subs.isLive() {
			r.needSlots = true // a master may be away: follow its failover
		}
		if r.needSlots && !time.Now().Before(r.nextRead) {
			r.readSlots(ctx)
		}
		select {
		case <-tick.C:
			poll = true
		case <-r.wake:
			poll = false
		case <-ctx.Done():
			return
		}
	}
}

// sync subscribes the channels of new rooms and unsubscribes those of
// rooms without local sockets any more; it reports whether any namespace's
// rooms changed.
func (r *roomSubs) sync() (changed bool) {
	for ns, h := range r.held {
		rooms := r.a.server.Rooms(ns.name)
		// A sum is blind to the order, which changes at every call. Two
		// different sets of rooms with the same sum and number are as
		// likely as a 64-bit hash collision (the seed is random).
		var seen uint64
		for _, room := range rooms {
			seen += maphash.String(r.seed, room)
		}
		if seen == h.seen && len(rooms) == h.count {
			continue
		}
		changed = true
		h.seen, h.count = seen, len(rooms)
		held, known := h.rooms, 0
		ns.mu.RLock()
		for _, room := range rooms {
			if _, ok := held[room]; ok {
				known++
				continue
			}
			if r.hold(ns, held, room) != nil {
				known++
			}
		}
		ns.mu.RUnlock()
		// Every room seen is held: fewer seen than held means some left.
		if known < len(held) {
			r.sweep(held, rooms)
		}
	}
	return changed
}

// hold subscribes room's channel, unless it has none (nil); the caller
// holds ns.mu and checked that room is not held.
func (r *roomSubs) hold(ns *namespace, held map[string]*roomSub, room string) *roomSub {
	_, private := ns.sockets[room]
	ch, ok := r.rc.roomChannel(ns.name, room, private)
	if !ok {
		return nil
	}
	cmd := r.rc.subscribeRoom(r.a.client.B(), ch)
	// Outside a cluster a builder marks the slot as unset in its high
	// bits; a plain SUBSCRIBE may have none: both map to a slot.
	rs := &roomSub{ns: ns, channel: ch, slot: cmd.Slot() & (slotCount - 1)}
	held[room] = rs
	r.byChannel[ch] = rs
	r.holding(ch, true)
	r.a.in.roomRoutes.Store(ch, ns)
	r.assign(rs)
	return rs
}

// join queues j for the manager; Adapter.Join calls it.
func (r *roomSubs) join(j roomJoin) {
	r.mu.Lock()
	r.joins = append(r.joins, j)
	r.mu.Unlock()
	r.poke()
}

// poke wakes the manager, which then also compares the rooms at once.
func (r *roomSubs) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// handleJoins holds the rooms of each join (sync may not have seen them
// yet) and hands the waits to their channels; it reports whether there
// were any.
func (r *roomSubs) handleJoins() bool {
	r.mu.Lock()
	joins := r.joins
	r.joins = nil
	r.mu.Unlock()
	for _, j := range joins {
		h := r.held[j.ns]
		j.ns.mu.RLock()
		for i, room := range j.rooms {
			rs, ok := h.rooms[room]
			if !ok {
				if rs = r.hold(j.ns, h.rooms, room); rs != nil {
					// Compare at the next tick even if the rooms look
					// the same: the socket may have left already.
					h.count = -1
				}
			}
			switch {
			case j.waits == nil: // nobody waits
			case rs == nil: // no channel: nothing to wait for
				close(j.waits[i])
			case rs.shard == nil:
				rs.waiters = append(rs.waiters, j.waits[i])
			default:
				rs.shard.await(rs.channel, j.waits[i])
			}
		}
		j.ns.mu.RUnlock()
	}
	return len(joins) > 0
}

// checkMaster, outside a cluster, notices that the shared client follows
// another master (a Sentinel failover) and moves the channels to it: a
// dedicated connection to the old master may stay up, demoted.
func (r *roomSubs) checkMaster() {
	if r.slots == nil || r.a.client.Mode() == rueidis.ClientModeCluster || time.Since(r.lastMasterCheck) < masterCheckInterval {
		return
	}
	r.lastMasterCheck = time.Now()
	for addr := range r.a.client.Nodes() {
		if addr != r.slots[0] {
			r.needSlots = true
		}
	}
}

// sweep drops the held rooms that are not in rooms.
func (r *roomSubs) sweep(held map[string]*roomSub, rooms []string) {
	present := make(map[string]struct{}, len(rooms))
	for _, room := range rooms {
		present[room] = struct{}{}
	}
	for room, rs := range held {
		if _, ok := present[room]; ok {
			continue
		}
		delete(held, room)
		delete(r.byChannel, rs.channel)
		r.holding(rs.channel, false)
		r.a.in.roomRoutes.Delete(rs.channel)
		if rs.shard != nil {
			rs.shard.count--
			waiters, _ := rs.shard.remove(rs.channel) // its sockets left: their gap goes with them
			rs.waiters = append(rs.waiters, waiters...)
		}
		// The sockets left: a Join waiting for the room returns.
		for _, w := range rs.waiters {
			close(w)
		}
	}
}

// assign gives rs to the shard of its slot's master, or leaves it waiting
// for the next slot map when that master is unknown.
func (r *roomSubs) assign(rs *roomSub) {
	var addr string
	if r.slots != nil {
		addr = r.slots[rs.slot]
	}
	if addr == "" {
		r.needSlots = true
		return
	}
	s, ok := r.shards[addr]
	if !ok {
		s = newShard(r, addr, r.probeChannel(addr))
		r.shards[addr] = s
	}
	rs.shard = s
	s.count++
	s.add(rs.channel, added{lost: rs.lost, gapFrom: rs.gapFrom}, rs.waiters)
	rs.lost, rs.gapFrom, rs.waiters = false, 0, nil
}

// report queues e for the manager; shards call it, never the Redis reader.
func (r *roomSubs) report(e shardEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.poke()
}

func (r *roomSubs) handleEvents() {
	r.mu.Lock()
	events := r.events
	r.events = nil
	r.mu.Unlock()
	for _, e := range events {
		r.needSlots = true
		if e.channel == "" {
			continue // a failed connection: its slots may have moved
		}
		rs, ok := r.byChannel[e.channel]
		switch {
		case !ok: // left: a Join waiting for it returns
			for _, w := range e.waiters {
				close(w)
			}
			continue
		case rs.shard != e.shard: // moved already: its gap follows it
			if rs.shard == nil {
				rs.waiters = append(rs.waiters, e.waiters...)
				rs.gapFrom = earliest(rs.gapFrom, e.gapFrom)
			} else {
				rs.shard.add(rs.channel, added{gapFrom: e.gapFrom}, e.waiters)
			}
			continue
		}
		rs.shard.count--
		rs.shard, rs.lost, rs.gapFrom = nil, e.lost, earliest(rs.gapFrom, e.gapFrom)
		rs.waiters = append(rs.waiters, e.waiters...)
	}
}

// readSlots reads the slot map from one node, moves the channels whose
// slot has another master, assigns those waiting for one, and stops the
// shards of addresses that hold nothing and are no longer masters. Reads
// back off while they keep being needed.
func (r *roomSubs) readSlots(ctx context.Context) {
	now := time.Now()
	if now.Sub(r.lastRead) > maxSlotsBackoff {
		r.slotsWait.reset()
	}
	r.lastRead, r.nextRead = now, now.Add(r.slotsWait.next())
	slots, err := r.a.clusterSlots(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.slotsFailed = true
			r.a.log.Debug("room channels: reading the slot map failed", "err", err)
		}
		return
	}
	if r.slotsFailed {
		r.slotsFailed = false
		r.a.log.Debug("room channels: slot map read again")
	}
	if r.a.reroute != nil && r.a.reroute.moved(r.slots, slots) {
		r.rerouting = true
	}
	r.slots, r.needSlots = slots, false
	for _, rs := range r.byChannel {
		if rs.shard != nil {
			if rs.shard.addr == slots[rs.slot] {
				continue
			}
			rs.shard.count--
			waiters, pending := rs.shard.remove(rs.channel)
			rs.waiters = append(rs.waiters, waiters...)
			// Its new master's publishes go unread until the new shard
			// confirms it: from the old shard's last read (a failover, or a
			// migration, found late), the other nodes are told (gaps.go).
			rs.gapFrom = earliest(rs.gapFrom, earliest(pending, earliest(rs.shard.unreadFrom.Load(), rs.shard.lastProof(now))))
			rs.shard, rs.lost = nil, true
		}
		r.assign(rs)
	}
	masters := make(map[string]bool)
	for _, addr := range slots {
		masters[addr] = true
	}
	for addr, s := range r.shards {
		if s.count == 0 && !masters[addr] {
			s.stop()
			delete(r.shards, addr)
			continue
		}
		if masters[addr] { // its slot may have moved: the next connection takes the new one
			if ch := r.probeChannel(addr); *s.probe.Load() != ch {
				s.probe.Store(&ch)
			}
		}
	}
}

// probeChannel is the channel of the delivery probe of the shard of addr:
// the first of the node's probe channels whose slot addr serves ("" if none
// is found in a bounded search: a master with a handful of slots).
func (r *roomSubs) probeChannel(addr string) string {
	for n := range slotCount * 4 {
		ch := shardProbeChannel(r.a.opts.Key, r.a.uid, n)
		cmd := r.rc.subscribeRoom(r.a.client.B(), ch)
		if r.slots[cmd.Slot()&(slotCount-1)] == addr {
			return ch
		}
	}
	return ""
}

// clusterSlots asks the nodes, in random order until one answers, which
// master serves each slot (CLUSTER SLOTS). A client that is not a cluster
// client (a Cluster connector given a standalone Redis 7, where SSUBSCRIBE
// works too) has one node, which serves every slot.
func (a *Adapter) clusterSlots(ctx context.Context) ([]string, error) {
	nodes := a.client.Nodes()
	if len(nodes) == 0 {
		return nil, errNoSuchNode
	}
	addrs := make([]string, 0, len(nodes))
	for addr := range nodes {
		addrs = append(addrs, addr)
	}
	slots := make([]string, slotCount)
	if a.client.Mode() != rueidis.ClientModeCluster {
		for i := range slots {
			slots[i] = addrs[0]
		}
		return slots, nil
	}
	// The nodes in random order, until one answers: one of them may be
	// the master that failed.
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	ctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	var (
		ranges []rueidis.RedisMessage
		addr   string
		err    error
	)
	for _, addr = range addrs {
		n := nodes[addr]
		if ranges, err = n.Do(ctx, n.B().ClusterSlots().Build()).ToArray(); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS on %s: %w", addr, err)
	}
	for _, rg := range ranges {
		// [start, end, [host, port, id, ...], replicas...]
		v, _ := rg.ToArray()
		if len(v) < 3 {
			continue
		}
		start, err1 := v[0].AsInt64()
		end, err2 := v[1].AsInt64()
		master, _ := v[2].ToArray()
		if err1 != nil || err2 != nil || len(master) < 2 {
			continue
		}
		host, _ := master[0].ToString()
		port, _ := master[1].AsInt64()
		switch host {
		case "?": // the node does not know its endpoint
			continue
		case "": // the same host as the node asked, as rueidis reads it
			host, _, _ = net.SplitHostPort(addr)
		}
		owner := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		for s := max(start, 0); s <= end && s < slotCount; s++ {
			slots[s] = owner
		}
	}
	return slots, nil
}

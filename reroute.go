package redisadapter

// After a cluster failover, commands on the failed master's slots go
// straight to the promoted replica, before rueidis knows it.
//
// rueidis re-reads the cluster's slot map after an error, but only after a
// random delay of up to a second (clusterRefreshAutoMaxDelay, a guard
// against refresh storms in large clusters), and a refresh that ran just
// before the promotion leaves the old map for another such delay: the
// subscriptions, the publishes and the answers of a node stayed on the
// dead master for 200 ms to a second after the promotion, each node at its
// own pace. The room manager (rooms.go) reads the slot map itself, with
// back-off while a master is away; when a read shows slots served by
// another master than the read before, the rerouter sends the commands of
// those slots to the new master's node client (rueidis's own connection
// to it) until rueidis routes them there too, which the manager checks
// with a harmless command keyed by one such slot. A node without a room
// manager (classic mode without RoomSubscriptions) runs followFailovers
// instead, which reads the map the same way while its publishes or
// subscriptions are down.

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// rerouteCheckTimeout bounds the check of rueidis's route to a rerouted
// master: a route to the dead master fails at once (refused) or hangs.
const rerouteCheckTimeout = 100 * time.Millisecond

// rerouter is the adapter's client in a cluster: the cluster client, with
// the slots that moved in a failover sent to their new master.
type rerouter struct {
	rueidis.Client

	mu     sync.RWMutex
	routes map[uint16]string         // slot -> its new master, until rueidis routes there
	nodes  map[string]rueidis.Client // the new masters' node clients
}

var _ rueidis.Client = (*rerouter)(nil)

func newRerouter(c rueidis.Client) *rerouter { return &rerouter{Client: c} }

// target returns the client for slot: the new master's while the slot is
// rerouted, nil otherwise.
func (r *rerouter) target(slot uint16) rueidis.Client {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.routes) == 0 || slot >= slotCount {
		return nil
	}
	addr, ok := r.routes[slot]
	if !ok {
		return nil
	}
	return r.nodes[addr]
}

// Do sends cmd to its slot's new master while the slot is rerouted.
func (r *rerouter) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if c := r.target(cmd.Slot()); c != nil {
		return c.Do(ctx, cmd)
	}
	return r.Client.Do(ctx, cmd)
}

// DoMulti sends the commands of rerouted slots to their new masters, and
// the rest through the cluster client; each destination gets its commands
// in their order.
func (r *rerouter) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	var groups map[rueidis.Client][]int
	for i, cmd := range cmds {
		if c := r.target(cmd.Slot()); c != nil {
			if groups == nil {
				groups = make(map[rueidis.Client][]int)
			}
			groups[c] = append(groups[c], i)
		}
	}
	if groups == nil {
		return r.Client.DoMulti(ctx, cmds...)
	}
	rerouted := make([]bool, len(cmds))
	for _, idx := range groups {
		for _, i := range idx {
			rerouted[i] = true
		}
	}
	var rest []int
	for i := range cmds {
		if !rerouted[i] {
			rest = append(rest, i)
		}
	}
	if len(rest) > 0 {
		groups[r.Client] = rest
	}
	results := make([]rueidis.RedisResult, len(cmds))
	for c, idx := range groups {
		sub := make([]rueidis.Completed, len(idx))
		for j, i := range idx {
			sub[j] = cmds[i]
		}
		for j, res := range c.DoMulti(ctx, sub...) {
			results[idx[j]] = res
		}
	}
	return results
}

// Receive subscribes on the new master while the slot is rerouted; the
// subscription stays on that connection.
func (r *rerouter) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(rueidis.PubSubMessage)) error {
	if c := r.target(subscribe.Slot()); c != nil {
		return c.Receive(ctx, subscribe, fn)
	}
	return r.Client.Receive(ctx, subscribe, fn)
}

// moved notes a new slot map read by the room manager: the slots of a
// master that serves none any more (a failover; a slot migrated between
// live masters is followed by rueidis at its MOVED answer) are rerouted to
// their new master, if the cluster client has a connection to it. It
// reports whether any slot is rerouted now.
func (r *rerouter) moved(before, now []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	masters := make(map[string]bool)
	for _, addr := range now {
		masters[addr] = true
	}
	var nodes map[string]rueidis.Client
	for slot, addr := range now {
		s := uint16(slot)
		if old, ok := r.routes[s]; ok && old != addr {
			delete(r.routes, s) // moved again: no longer known to be new
		}
		if before == nil || before[slot] == "" || before[slot] == addr || addr == "" || masters[before[slot]] {
			continue
		}
		if nodes == nil {
			nodes = r.Client.Nodes()
		}
		n, ok := nodes[addr]
		if !ok {
			continue // not among rueidis's nodes: it has to learn of it anyway
		}
		if r.routes == nil {
			r.routes, r.nodes = make(map[uint16]string), make(map[string]rueidis.Client)
		}
		r.routes[s], r.nodes[addr] = addr, n
	}
	return len(r.routes) > 0
}

// check asks, for each rerouted master, whether the cluster client routes
// one of its slots to a live node now (any answer from Redis proves it),
// and stops rerouting that master's slots if it does. A route to the dead
// master fails, and its error makes rueidis refresh its map. A master with
// too few rerouted slots to find a channel for is left to rueidis. It
// reports whether any slot is still rerouted. The manager calls it, as it
// calls moved: only they change the routes.
func (r *rerouter) check(ctx context.Context, key string) bool {
	probes := make(map[string]string) // master -> a channel of one of its slots
	for addr := range r.nodes {
		probes[addr] = ""
	}
	found := 0
	for i := 0; found < len(probes) && i < 64*len(probes); i++ {
		ch := key + "#reroute#" + strconv.Itoa(i)
		cmd := r.Client.B().PubsubShardnumsub().Channel(ch).Build()
		if addr, ok := r.routes[cmd.Slot()]; ok && probes[addr] == "" {
			probes[addr] = ch
			found++
		}
	}
	for addr, ch := range probes {
		if ch != "" {
			cctx, cancel := context.WithTimeout(ctx, rerouteCheckTimeout)
			err := r.Client.Do(cctx, r.Client.B().PubsubShardnumsub().Channel(ch).Build()).Error()
			cancel()
			if _, answered := rueidis.IsRedisErr(err); err != nil && !answered {
				continue
			}
		}
		r.mu.Lock()
		for slot, to := range r.routes {
			if to == addr {
				delete(r.routes, slot)
			}
		}
		delete(r.nodes, addr)
		r.mu.Unlock()
	}
	return len(r.routes) > 0
}

// followInterval is how often followFailovers looks at the node's state:
// what it reads is in memory, until a publish or a subscription fails.
const followInterval = 10 * time.Millisecond

// followFailovers does for a node without a room manager what the manager
// does for the rerouter: it reads the slot map once, then again, with the
// manager's back-off, while the last batch of publishes reached no master
// or a subscription is down (a master may be away), and reroutes the
// slots a read shows with a new master; while some are rerouted, it checks
// rueidis's route every roomSyncInterval. It runs until ctx ends.
func (a *Adapter) followFailovers(ctx context.Context) {
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	var slots []string
	var next, lastRead, lastCheck time.Time
	wait := backoff{min: minSlotsBackoff, max: maxSlotsBackoff}
	rerouting := false
	for {
		now := time.Now()
		if rerouting && now.Sub(lastCheck) >= roomSyncInterval {
			lastCheck = now
			rerouting = a.reroute.check(ctx, a.opts.Key)
		}
		if (slots == nil || a.pub.isDown() || !a.subs.isLive()) && !now.Before(next) {
			if now.Sub(lastRead) > maxSlotsBackoff {
				wait.reset()
			}
			lastRead, next = now, now.Add(wait.next())
			if read, err := a.clusterSlots(ctx); err == nil {
				if a.reroute.moved(slots, read) {
					rerouting = true
				}
				slots = read
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

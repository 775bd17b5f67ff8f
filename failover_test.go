package redisadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// resumed emits fresh ticks from sender, to room "r" (its own channel
// with sharded pub/sub) and to the whole namespace, until every client has
// received both from this call, and returns how long after since that took.
// It fails the test when that takes longer than within.
func resumed(t *testing.T, sender *node, clients []*siotest.Client, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	round := `"` + fmt.Sprint(time.Now().UnixNano()) + `"` // ticks of earlier calls do not count
	got := make([]map[string]bool, len(clients))
	for j := range got {
		got[j] = map[string]bool{}
	}
	done := func() bool {
		for _, g := range got {
			if !g["tick-room"] || !g["tick-all"] {
				return false
			}
		}
		return true
	}
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		// These fail while Redis is away: that is the point.
		_ = sender.a.To("r").Emit(ctx, "tick-room", round[1:len(round)-1], i)
		_ = sender.a.Of("/").Emit(ctx, "tick-all", round[1:len(round)-1], i)
		cancel()
		for j, c := range clients {
		drain:
			for {
				select {
				case e := <-c.Events:
					if len(e.Args) > 0 && string(e.Args[0]) == round {
						got[j][e.Name] = true
					}
				default:
					break drain
				}
			}
		}
		if done() {
			return time.Since(since)
		}
		if time.Since(since) > within {
			t.Fatalf("broadcasts did not resume within %v (clients reached: %v)", within, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	sentinelFailover(t, set, redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()})
}

// With RoomSubscriptions the room channels' own connection follows the
// master too.
func TestSentinelFailoverRoomSubscriptions(t *testing.T) {
	set := redistest.StartSentinel(t)
	sentinelFailover(t, set, redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs(), RoomSubscriptions: true})
}

// sentinelFailover kills the master of set under two nodes of c and checks
// that requests fail meanwhile and broadcasts flow again after the election.
func sentinelFailover(t *testing.T, set *redistest.SentinelSet, c redisadapter.Sentinel) {
	opts := &redisadapter.Options{RequestTimeout: time.Second}
	a, b := startNodes(t, c, opts)
	clients := []*siotest.Client{a.client(t, "r"), b.client(t, "r")}
	resumed(t, a, clients, time.Now(), wait)

	old, err := set.CurrentMaster(bg(t))
	require.NoError(t, err)
	require.Equal(t, set.Master.Addr(), old)
	killed := time.Now()
	set.Master.Stop(t)

	// During the outage requests fail, naming the cause, instead of
	// hanging: the bound is far past RequestTimeout (1 s) and only catches
	// a hang.
	start := time.Now()
	_, err = a.a.Of("/").AllRooms(context.Background())
	require.Error(t, err)
	require.Less(t, time.Since(start), wait)
	t.Logf("request during the outage: %v", err)

	elected := newMaster(t, set, old)
	// The bound only catches a node that does not recover; BenchmarkRecovery
	// (sentinel) measures how soon.
	d := resumed(t, a, clients, elected, 2*wait)
	t.Logf("master killed; new master elected after %v; broadcasts resumed %v after the election", elected.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))
	eventually(t, "both nodes counted on the new master", func() bool {
		n, err := a.a.Of("/").ServerCount(bg(t))
		return err == nil && n == 2
	})
}

func TestClusterFailover(t *testing.T) {
	for _, mode := range []struct {
		name              string
		sharded, roomSubs bool
	}{{"Classic", false, false}, {"ClassicRoomSubscriptions", false, true}, {"Sharded", true, false}} {
		t.Run(mode.name, func(t *testing.T) {
			clusterFailover(t, mode.sharded, mode.roomSubs)
		})
	}
}

// clusterFailover kills a master holding subscriptions; with roomSubs
// (classic with RoomSubscriptions) the master holding the room's channel.
func clusterFailover(t *testing.T, sharded, roomSubs bool) {
	set := redistest.StartCluster(t)
	c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: sharded, RoomSubscriptions: roomSubs}
	opts := &redisadapter.Options{RequestTimeout: time.Second}

	var masters []*redistest.Server
	for _, n := range set.Nodes {
		if role, err := n.Role(bg(t)); err == nil && role == "master" {
			masters = append(masters, n)
		}
	}
	require.Len(t, masters, 3)
	// Kill a master that holds subscriptions: with sharded pub/sub, the
	// owner of the namespace channel's slot (every node subscribes there);
	// classic subscriptions sit on whichever node the client picked, so
	// nodes are started until one sits on a master.
	var nodes []*node
	var clients []*siotest.Client
	var victim *redistest.Server
	for victim == nil {
		require.Less(t, len(nodes), 12, "no adapter subscribed on a master")
		n := startNode(t, c, opts)
		nodes = append(nodes, n)
		clients = append(clients, n.client(t, "r"))
		for _, m := range masters {
			if roomSubs {
				// Every node's channel of "r" sits on its slot's master.
				channelSubscribers(t, c, defaultNames.room("/", "r"), int64(len(nodes)))
				out, err := m.Exec(bg(t), "redis-cli", "-p", fmt.Sprint(m.Port), "PUBSUB", "NUMSUB", defaultNames.room("/", "r"))
				require.NoError(t, err, out)
				if !strings.HasSuffix(strings.TrimSpace(out), "\n0") {
					victim = m
					break
				}
				continue
			}
			if subscribers(t, m, sharded) > 0 {
				victim = m
				break
			}
		}
	}
	// The sender holds no client: every tick a client gets came through Redis.
	sender := startNode(t, c, opts)
	if sharded {
		shardSubscribers(t, c, defaultNames.room("/", "r"), int64(len(nodes)))
	}
	resumed(t, sender, clients, time.Now(), wait)

	killed := time.Now()
	victim.Stop(t)
	var promoted time.Time
	deadline := time.Now().Add(30 * time.Second)
	for promoted.IsZero() {
		for _, n := range set.Nodes {
			if n == victim || slices.Contains(masters, n) {
				continue
			}
			if role, err := n.Role(bg(t)); err == nil && role == "master" {
				promoted = time.Now()
			}
		}
		require.True(t, time.Now().Before(deadline), "no replica promoted")
		time.Sleep(20 * time.Millisecond)
	}
	// The bound only catches a node that does not recover; BenchmarkRecovery
	// (cluster-classic, cluster-sharded) measures how soon.
	d := resumed(t, sender, clients, promoted, 2*wait)
	t.Logf("master %d killed with %d receiving adapters up; replica promoted after %v; broadcasts on every channel resumed %v after the promotion",
		victim.Port, len(nodes), promoted.Sub(killed).Round(time.Millisecond), d.Round(time.Millisecond))

	// The cluster serves again: every node's health check says so, and
	// keeps saying so while the dead master (a seed address) stays down.
	all := append(nodes, sender)
	eventually(t, "every node healthy after the failover", func() bool {
		for _, n := range all {
			if n.a.Ping(bg(t)) != nil {
				return false
			}
		}
		return true
	})
	for range 20 {
		for i, n := range all {
			require.NoError(t, n.a.Ping(bg(t)), "node %d after the failover", i)
		}
	}
}

// A fleet whose nodes each hold rooms of their own on every master (the
// shape of BenchmarkRecovery/cluster-sharded-own-rooms) delivers to every
// room again soon after a master fails over. Before the rerouter
// (reroute.go) each node waited for rueidis's own refresh of the slot map,
// up to a second after the promotion; the bound is generous, the benchmark
// measures.
func TestShardedFailoverOwnRooms(t *testing.T) {
	set, c, fault := clusterFailoverFault(t, true)
	opts := &redisadapter.Options{RequestTimeout: time.Second}
	fleet := []*node{startNode(t, c, opts), startNode(t, c, opts), startNode(t, c, opts)}
	const roomsPerNode = 16
	p := newProbe(t, fleet, 12, roomsPerNode)
	p.awaitSubscribed(t, c)
	// Every node holds room channels on each of the three masters.
	held := map[[2]int]bool{} // {node, port}
	for _, n := range set.Nodes {
		channels := strings.Fields(clusterCLI(t, n, "PUBSUB", "SHARDCHANNELS"))
		for post := range p.posts {
			if slices.Contains(channels, defaultNames.room("/", fmt.Sprintf("post:%d", post))) {
				held[[2]int{post / roomsPerNode, n.Port}] = true
			}
		}
	}
	require.Len(t, held, len(fleet)*3, "nodes and masters holding rooms: %v", held)

	p.start()
	started := time.Now()
	waitFor(t, "broadcasts on every post flow", func() bool { return p.flowing(started) })
	promoted := fault()
	waitFor(t, "broadcasts on every post flow again", func() bool { return p.flowing(promoted) })
	p.stop()
	flows, _ := p.flows(promoted)
	t.Logf("first delivery after the promotion, over %d rooms: min %v, median %v, max %v", len(flows),
		slices.Min(flows).Round(time.Millisecond), median(flows).Round(time.Millisecond), slices.Max(flows).Round(time.Millisecond))
	require.Less(t, slices.Max(flows), 1500*time.Millisecond, "a room received again too late after the promotion")
}

// subscribers is how many adapters subscribe on one node: to the root
// namespace's request channel (classic), or its channel (sharded).
func subscribers(t *testing.T, n *redistest.Server, sharded bool) int {
	t.Helper()
	cmd := []string{"redis-cli", "-p", fmt.Sprint(n.Port), "PUBSUB", "NUMSUB", defaultNames.requests("/")}
	if sharded {
		cmd = []string{"redis-cli", "-p", fmt.Sprint(n.Port), "PUBSUB", "SHARDNUMSUB", defaultNames.namespace("/")}
	}
	out, err := n.Exec(bg(t), cmd...)
	require.NoError(t, err, out)
	var ch string
	var count int
	_, _ = fmt.Sscan(out, &ch, &count)
	return count
}

// With sharded pub/sub, a socket in 2,000 rooms costs no goroutine per
// room, every room's channel carries broadcasts from another node, and
// after the masters kill every pub/sub connection each room receives again
// and each room channel counts as a resubscription.
func TestShardedManyRooms(t *testing.T) {
	set := sharedCluster(t)
	c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
	opts := &redisadapter.Options{Key: uniqueKey(t)}
	a, b := startNode(t, c, opts), startNode(t, c, opts)
	cl := a.client(t)
	conn := socketConn(t, a, cl.ID())
	rooms := make([]string, 2000)
	for i := range rooms {
		rooms[i] = "room-" + strconv.Itoa(i)
	}

	// The baseline: 100 rooms, which spread over the three masters.
	for _, r := range rooms[:100] {
		a.srv.JoinRoom("/", r, conn)
	}
	everyRoomReceives(t, b, cl, rooms[:100], "warm-up")
	baseline := runtime.NumGoroutine()
	for _, r := range rooms[100:] {
		a.srv.JoinRoom("/", r, conn)
	}
	everyRoomReceives(t, b, cl, rooms, "before")
	added := runtime.NumGoroutine() - baseline
	t.Logf("goroutines: %d with 100 rooms, %+d with %d", baseline, added, len(rooms))
	require.Less(t, added, (len(rooms)-100)/100, "more than a goroutine per 100 rooms")

	resubscribes := a.a.Stats().Resubscribes
	var masters int
	for _, n := range set.Nodes {
		if role, err := n.Role(bg(t)); err != nil || role != "master" {
			continue
		}
		masters++
		out, err := n.Exec(bg(t), "redis-cli", "-p", fmt.Sprint(n.Port), "CLIENT", "KILL", "TYPE", "pubsub")
		require.NoError(t, err, out)
	}
	require.Equal(t, 3, masters)
	everyRoomReceives(t, b, cl, rooms, "after")
	require.GreaterOrEqual(t, a.a.Stats().Resubscribes-resubscribes, uint64(len(rooms)))
	require.Less(t, runtime.NumGoroutine()-baseline, (len(rooms)-100)/100, "goroutines left by the reconnections")

	// Leaving the rooms unsubscribes their channels.
	for _, r := range rooms {
		a.srv.LeaveRoom("/", r, conn)
	}
	raw := rawClient(t, c)
	eventually(t, "every room channel unsubscribed", func() bool {
		cmds := make(rueidis.Commands, len(rooms))
		for i, r := range rooms {
			cmds[i] = raw.B().PubsubShardnumsub().Channel(names{opts.Key}.room("/", r)).Build()
		}
		for _, res := range raw.DoMulti(bg(t), cmds...) {
			if n, err := res.AsIntMap(); err != nil || slices.ContainsFunc(slices.Collect(maps.Values(n)), func(v int64) bool { return v != 0 }) {
				return false
			}
		}
		return true
	})
}

// everyRoomReceives broadcasts from sender to each room, one room at a
// time, until c has received the broadcast of every room (the rooms'
// channels may not be subscribed yet: broadcasts are repeated for the rooms
// still missing).
func everyRoomReceives(t *testing.T, sender *node, c *siotest.Client, rooms []string, tag string) {
	t.Helper()
	missing := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		missing[r] = true
	}
	drain := func() {
		for {
			select {
			case e := <-c.Events:
				var got [2]string
				if e.Name == "hit" && len(e.Args) == 2 && json.Unmarshal(e.Args[0], &got[0]) == nil && json.Unmarshal(e.Args[1], &got[1]) == nil && got[0] == tag {
					delete(missing, got[1])
				}
			default:
				return
			}
		}
	}
	deadline := time.Now().Add(4 * wait)
	for len(missing) > 0 {
		require.True(t, time.Now().Before(deadline), "%s: %d of %d rooms received nothing", tag, len(missing), len(rooms))
		sent := 0
		for r := range missing {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = sender.a.To(r).Emit(ctx, "hit", tag, r) // fails while the masters drop connections
			cancel()
			if sent++; sent%200 == 0 {
				drain() // the client's event queue holds 1,024
			}
		}
		// What is still in flight arrives within this round's wait.
		roundEnd := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(roundEnd) && len(missing) > 0 {
			drain()
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A room channel whose slot migrates to another master is subscribed there:
// the old master drops the subscription (an unrequested sunsubscribe) and
// the node subscribes at the new owner, then tells the others, in a gap
// notice for the rooms' channels, that it could not read them meanwhile.
func TestShardedRoomSlotMigrates(t *testing.T) {
	// A cluster of its own: moving a slot by hand leaves the masters' views
	// of the cluster apart for a while, which later tests would see.
	set := redistest.StartCluster(t)
	c := redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
	opts := &redisadapter.Options{Key: uniqueKey(t)}
	a, b := startNode(t, c, opts), startNode(t, c, opts)
	cl := a.client(t, "moving")
	everyRoomReceives(t, b, cl, []string{"moving"}, "before")

	// A spy on the namespace's channel, where the notices go.
	notices := spyOn(t, c, func(b rueidis.Builder) rueidis.Completed {
		return b.Ssubscribe().Channel(names{opts.Key}.namespace("/")).Build()
	})
	eventually(t, "the spy reads the namespace's channel", func() bool {
		require.NoError(t, b.a.Of("/").Emit(bg(t), "spied"))
		select {
		case <-notices:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})

	ch := names{opts.Key}.room("/", "moving")
	resubscribes := a.a.Stats().Resubscribes
	slot, target := moveSlot(t, set, ch)
	moved := time.Now()
	eventually(t, "the channel subscribed at the new owner", func() bool {
		return clusterCLI(t, target, "PUBSUB", "SHARDNUMSUB", ch) == ch+"\n1"
	})
	t.Logf("slot %d moved; subscribed at the new owner after %v", slot, time.Since(moved).Round(time.Millisecond))
	everyRoomReceives(t, b, cl, []string{"moving"}, "after")
	require.Greater(t, a.a.Stats().Resubscribes, resubscribes)
	deadline := time.After(wait)
	for {
		select {
		case m := <-notices:
			var n struct {
				UID  string `json:"uid"`
				Type int    `json:"type"`
				Data struct {
					RoomChannels bool `json:"roomChannels"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(m), &n) == nil && n.Type == 1000 && n.UID == a.a.UID() && n.Data.RoomChannels {
				t.Logf("a's notice: %s", m)
				return
			}
		case <-deadline:
			t.Fatal("a sent no gap notice for its room channels")
		}
	}
}

// clusterCLI runs redis-cli against n and returns its output, trimmed.
func clusterCLI(t *testing.T, n *redistest.Server, args ...string) string {
	t.Helper()
	out, err := n.Exec(bg(t), append([]string{"redis-cli", "-p", fmt.Sprint(n.Port)}, args...)...)
	require.NoError(t, err, out)
	return strings.TrimSpace(out)
}

// moveSlot moves the slot of key from the master that owns it to another,
// by hand, as a resharding does (its keys migrated with it), and returns
// the slot and its new owner.
func moveSlot(t *testing.T, set *redistest.ClusterSet, key string) (int, *redistest.Server) {
	t.Helper()
	slot, err := strconv.Atoi(clusterCLI(t, set.Nodes[0], "CLUSTER", "KEYSLOT", key))
	require.NoError(t, err)
	// CLUSTER NODES: <id> <addr@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots>...
	var source, target *redistest.Server
	ids := map[*redistest.Server]string{}
	for _, line := range strings.Split(clusterCLI(t, set.Nodes[0], "CLUSTER", "NODES"), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") {
			continue
		}
		var n *redistest.Server
		for _, s := range set.Nodes {
			if strings.HasPrefix(f[1], s.Addr()+"@") {
				n = s
			}
		}
		require.NotNil(t, n, line)
		ids[n] = f[0]
		owns := false
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			if hi == "" {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			owns = owns || err1 == nil && err2 == nil && l <= slot && slot <= h
		}
		if owns {
			source = n
		} else if target == nil {
			target = n
		}
	}
	require.NotNil(t, source)
	require.NotNil(t, target)
	s := fmt.Sprint(slot)
	clusterCLI(t, target, "CLUSTER", "SETSLOT", s, "IMPORTING", ids[source])
	clusterCLI(t, source, "CLUSTER", "SETSLOT", s, "MIGRATING", ids[target])
	for {
		keys := strings.Fields(clusterCLI(t, source, "CLUSTER", "GETKEYSINSLOT", s, "100"))
		if len(keys) == 0 {
			break
		}
		args := append([]string{"MIGRATE", "127.0.0.1", fmt.Sprint(target.Port), "", "0", "5000", "KEYS"}, keys...)
		require.Equal(t, "OK", clusterCLI(t, source, args...))
	}
	clusterCLI(t, target, "CLUSTER", "SETSLOT", s, "NODE", ids[target])
	clusterCLI(t, source, "CLUSTER", "SETSLOT", s, "NODE", ids[target])
	return slot, target
}

// newMaster waits until the set's sentinels name a master other than old
// (the replica) and returns when they first did. Generous: a sentinel whose
// process stalled for 2 s on a loaded machine enters TILT mode and elects
// nobody for 30 s.
func newMaster(t *testing.T, set *redistest.SentinelSet, old string) time.Time {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if m, err := set.CurrentMaster(bg(t)); err == nil && m != old {
			require.Equal(t, set.Replica.Addr(), m)
			return time.Now()
		}
		require.True(t, time.Now().Before(deadline), "no new master elected:\n%s", set.Describe(bg(t)))
		time.Sleep(20 * time.Millisecond)
	}
}

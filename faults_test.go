package redisadapter_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/faultproxy"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// The fault matrix: each fault of issue 22, in each mode where it applies,
// measured on one clock by one harness (runFault) that TestFaults bounds
// and BenchmarkFaults reports.
//
// Two nodes: the victim reaches Redis through a fault proxy, the other
// directly (with Sentinel, both through the sentinels; on a cluster, the
// victim through a proxy per cluster node in the cases on the network,
// both directly in the others). The nodes take turns broadcasting a
// numbered comment every 20 ms to a room where each has one websocket
// client. The proxies' faults hit the victim alone; the faults on Redis
// hit both.

// faultHold is how long a fault that is not instantaneous lasts, unless
// the case says otherwise: longer than detection takes (about 1.2 s with
// the default probe), so that the node has to notice.
const faultHold = 3 * time.Second

// faultEnv is one case's fleet and what the faults act on.
type faultEnv struct {
	srv           *redistest.Server      // standalone Redis
	cluster       *redistest.ClusterSet  // cluster cases (the shared cluster)
	set           *redistest.SentinelSet // Sentinel cases
	px            proxies                // between the victim and Redis (standalone), or each cluster node (network cases)
	victim, other *node
}

// proxies are the victim's fault proxies, one per Redis node it reaches
// through one: each fault acts on all.
type proxies []*faultproxy.Proxy

func (ps proxies) Blackhole(d faultproxy.Direction) {
	for _, p := range ps {
		p.Blackhole(d)
	}
}

func (ps proxies) Heal() {
	for _, p := range ps {
		p.Heal()
	}
}

func (ps proxies) Latency(d time.Duration) {
	for _, p := range ps {
		p.Latency(d)
	}
}

func (ps proxies) SlowRead(bytesPerSecond int) {
	for _, p := range ps {
		p.SlowRead(bytesPerSecond)
	}
}

func (ps proxies) Reset() {
	for _, p := range ps {
		p.Reset()
	}
}

// BlackholeConn blackholes the connection the server sees coming from
// addr on whichever proxy has it, and reports whether one had.
func (ps proxies) BlackholeConn(addr string, d faultproxy.Direction) bool {
	for _, p := range ps {
		if p.BlackholeConn(addr, d) {
			return true
		}
	}
	return false
}

// Silent is how many connections are silent on all the proxies.
func (ps proxies) Silent() int {
	n := 0
	for _, p := range ps {
		n += p.Silent()
	}
	return n
}

// proxied returns conn (a Cluster or a Sentinel, or Streams over one)
// dialing each of servers through a fault proxy of its own, and the
// proxies: whatever addresses a cluster announces (CLUSTER SLOTS, MOVED)
// or the sentinels name, the victim reaches each data node through its
// own proxy. A Sentinel client dials the sentinels directly; a cluster
// client dials nothing else.
func proxied(t testing.TB, servers []*redistest.Server, conn redisadapter.Connector) (redisadapter.Connector, proxies) {
	t.Helper()
	var ps proxies
	routes := map[string]string{}
	for _, n := range servers {
		p := faultproxy.Start(t, n.Addr())
		ps = append(ps, p)
		routes[n.Addr()] = p.Addr()
	}
	var via func(redisadapter.Connector) redisadapter.Connector
	via = func(conn redisadapter.Connector) redisadapter.Connector {
		switch c := conn.(type) {
		case redisadapter.Streams:
			c.Connector = via(c.Connector)
			return c
		case redisadapter.Cluster:
			return redisadapter.ClusterDialingVia(c, func(addr string) string {
				if to, ok := routes[addr]; ok {
					return to
				}
				t.Errorf("the victim dialed %s, no cluster node's address: not through a proxy", addr)
				return addr
			})
		case redisadapter.Sentinel:
			return redisadapter.SentinelDialingVia(c, func(addr string) string {
				if to, ok := routes[addr]; ok {
					return to
				}
				return addr // a sentinel
			})
		}
		t.Fatalf("no dial seam on a %T", conn)
		return nil
	}
	return via(conn), ps
}

// faultMode is a mode the adapter runs in, given the address of a
// standalone Redis, the sentinel set or the cluster: a mode lacks the
// topologies it does not run on.
type faultMode struct {
	name    string
	conn    func(addr string) redisadapter.Connector
	sent    func(set *redistest.SentinelSet) redisadapter.Connector
	cluster func(set *redistest.ClusterSet) redisadapter.Connector
}

// streams reports whether the mode is streams mode, which loses nothing.
func (m faultMode) streams() bool { return strings.HasSuffix(m.name, "streams") }

var (
	faultClassic = faultMode{name: "classic",
		conn: func(addr string) redisadapter.Connector { return redisadapter.Standalone{Addr: addr} },
		sent: func(set *redistest.SentinelSet) redisadapter.Connector {
			return redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}
		}}
	faultStreams = faultMode{name: "streams",
		conn: func(addr string) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Standalone{Addr: addr}}
		},
		sent: func(set *redistest.SentinelSet) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}}
		}}
	// Sharded pub/sub runs on a cluster only: in the cases on the network,
	// the victim dials each cluster node through a proxy of its own
	// (proxied).
	faultSharded = faultMode{name: "sharded",
		cluster: func(set *redistest.ClusterSet) redisadapter.Connector {
			return redisadapter.Cluster{Addrs: set.Addrs(), Sharded: true}
		}}
	// Classic pub/sub and streams on a cluster, for the faults on the
	// network: PUBLISH goes through the cluster bus, and a stream lives on
	// one master.
	faultClusterClassic = faultMode{name: "cluster-classic",
		cluster: func(set *redistest.ClusterSet) redisadapter.Connector {
			return redisadapter.Cluster{Addrs: set.Addrs()}
		}}
	faultClusterStreams = faultMode{name: "cluster-streams",
		cluster: func(set *redistest.ClusterSet) redisadapter.Connector {
			return redisadapter.Streams{Connector: redisadapter.Cluster{Addrs: set.Addrs()}}
		}}
	// Classic pub/sub and streams with Sentinel, for the faults on the
	// network: the victim reaches the data nodes through proxies of its
	// own, the sentinels directly (proxied).
	faultSentinelClassic = faultMode{name: "sentinel-classic", sent: faultClassic.sent}
	faultSentinelStreams = faultMode{name: "sentinel-streams", sent: faultStreams.sent}
)

// networkModes are the modes of the faults on the victim's network.
var networkModes = []faultMode{faultClassic, faultStreams, faultSharded, faultClusterClassic, faultClusterStreams, faultSentinelClassic, faultSentinelStreams}

// faultCase is one fault: inject starts it, holds it and ends it, and
// returns when it ended (with Sentinel, when the new master was elected).
type faultCase struct {
	name     string
	modes    []faultMode
	sentinel bool
	long     bool // skipped under -short (CI runs the suite without it)
	// quiet: the fault must not be taken for a dead connection (Ping never
	// fails, nothing is lost or refused).
	quiet bool
	// reportsLoss: in pub/sub modes, every broadcast the fault loses is
	// reported (PublishFailures). A broadcast published while the others'
	// renewed subscriptions are not back yet reaches fewer subscribers
	// than before the publisher's outage, and counts failed
	// (errReachedFewer); one published while the victim could not read is
	// counted failed by its publisher on the victim's gap notice (gaps.go).
	reportsLoss bool
	// broken, when set, says why the node does not recover from the fault
	// yet: TestFaults skips the case, BenchmarkFaults reports it.
	broken string
	// network: the fault is on the victim's network (its proxies). On a
	// cluster, the victim reaches each node through a proxy of its own.
	network bool
	// ownCluster: the fault changes the cluster (a node frozen, its
	// configuration), so the case has a cluster of its own, not the one
	// the package's tests share.
	ownCluster bool
	// detectWithin, when set, replaces the default bound on detection.
	detectWithin time.Duration
	inject       func(t testing.TB, e *faultEnv) time.Time
}

// hold lets a fault last d: the fault's length is what is measured, not a
// condition to wait for.
func hold(d time.Duration) time.Time {
	time.Sleep(d)
	return time.Now()
}

// holdJittered lets a blackhole last d, and up to holdJitter more: the
// jitter keeps its end from falling at the same point of the victim's
// renewal cycle in every run (with d alone, it healed about 15 ms after
// the victim dialed again, run after run, and the figures hid the wait for
// the next dial).
func holdJittered(d time.Duration) time.Time { return hold(d + rand.N(holdJitter)) }

// holdJitter is longer than a renewal's cycle after a failed probe
// (renewalWait: 100 ms at least).
const holdJitter = 150 * time.Millisecond

var faultCases = []faultCase{
	// The victim still reads the other node's broadcasts, so its late
	// probe looks like one behind a burst: a probe published aside, on
	// another connection, unanswered, tells it apart (probe.go). Once the
	// victim closed its connections, it cannot subscribe again until the
	// fault heals, and what the other node publishes meanwhile (about 2 s)
	// reaches the other node alone: the victim's gap notice, once it is
	// back, has the other node count it failed (gaps.go).
	{name: "blackhole-to-redis", modes: networkModes, network: true, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.Blackhole(faultproxy.ToServer)
		defer e.px.Heal()
		return holdJittered(faultHold)
	}},
	// The victim reads nothing, and Redis counts it reached: its gap
	// notice has the other node count failed what it missed.
	{name: "blackhole-from-redis", modes: networkModes, network: true, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.Blackhole(faultproxy.ToClient)
		defer e.px.Heal()
		return holdJittered(faultHold)
	}},
	{name: "latency-200ms", modes: networkModes, network: true, quiet: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.Latency(200 * time.Millisecond)
		defer e.px.Latency(0)
		return hold(faultHold)
	}},
	{name: "reset", modes: networkModes, network: true, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.Reset()
		return time.Now()
	}},
	// The victim keeps reading, slowly: its probe is waited for as behind
	// a burst, and it rides the fault out with late deliveries.
	{name: "slow-reader", modes: networkModes, network: true, quiet: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.SlowRead(1 << 10)
		defer e.px.SlowRead(0)
		return hold(faultHold)
	}},
	{name: "sigstop-3s", modes: []faultMode{faultClassic, faultStreams}, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.srv.Freeze(t)
		defer e.srv.Thaw(t)
		return hold(3 * time.Second)
	}},
	{name: "sigstop-15s", modes: []faultMode{faultClassic, faultStreams}, long: true, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.srv.Freeze(t)
		defer e.srv.Thaw(t)
		return hold(15 * time.Second)
	}},
	// ownCluster: the kill would hit the cases sharing the cluster too.
	{name: "client-kill-pubsub", modes: []faultMode{faultClassic, faultStreams, faultSharded}, ownCluster: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		servers := []*redistest.Server{e.srv}
		if e.cluster != nil {
			servers = e.cluster.Nodes
		}
		for _, srv := range servers {
			raw := rawClient(t, redisadapter.Standalone{Addr: srv.Addr()})
			require.NoError(t, raw.Do(context.Background(), raw.B().ClientKill().TypePubsub().Build()).Error())
		}
		return time.Now()
	}},
	// Redis drops every pub/sub connection while the victim's link is slow
	// (200 ms each way): the other node renews its subscriptions within
	// milliseconds and publishes again after the settle delay, while the
	// victim's renewal takes a few round trips more. What the other node
	// publishes meanwhile reaches it alone, fewer subscribers than before
	// its outage: reported (errReachedFewer).
	{name: "client-kill-pubsub-slow-victim", modes: []faultMode{faultClassic, faultStreams}, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		e.px.Latency(200 * time.Millisecond)
		defer e.px.Latency(0)
		raw := rawClient(t, redisadapter.Standalone{Addr: e.srv.Addr()})
		before := e.victim.a.Stats().Resubscribes
		require.NoError(t, raw.Do(context.Background(), raw.B().ClientKill().TypePubsub().Build()).Error())
		await.True(t, wait, 10*time.Millisecond, "the victim's subscriptions back", func() bool {
			return e.victim.a.Stats().Resubscribes > before && e.victim.a.Ping(context.Background()) == nil
		})
		return time.Now()
	}},
	// The victim's stream reader's connection alone goes silent, in both
	// directions: the namespace's probe, on the pub/sub connection, keeps
	// coming back, so only the reader's own check finds it: an XREAD
	// BLOCK unanswered ProbeInterval + ProbeTimeout (1.2 s) after it was
	// sent, on a connection that has read nothing since (closeSilent), is
	// given up (slow-reader: a slow link is not). The fault lasts until
	// the reader gave the connection up and blocks on another: it reads
	// from its last entry, so nothing the other node published meanwhile
	// is lost.
	{name: "blackhole-stream-reader", modes: []faultMode{faultStreams}, detectWithin: 3 * time.Second, inject: func(t testing.TB, e *faultEnv) time.Time {
		raw := rawClient(t, redisadapter.Standalone{Addr: e.srv.Addr()})
		before := e.victim.a.Stats().ProbeFailures
		var silenced string
		await.True(t, wait, 10*time.Millisecond, "the victim's stream reader blocked in XREAD, silenced", func() bool {
			for _, addr := range blockedInXread(t, raw) {
				if e.px.BlackholeConn(addr, faultproxy.Both) { // the other node's reader is not the proxy's
					silenced = addr
					return true
				}
			}
			return false
		})
		start := time.Now()
		await.True(t, 4*wait, 10*time.Millisecond, "the silent reader connection given up", func() bool {
			return e.victim.a.Stats().ProbeFailures > before && e.px.Silent() == 0
		})
		renewed := time.Now()
		t.Logf("the victim's reader gave its silent connection up %v after it went silent", renewed.Sub(start).Round(time.Millisecond))
		await.True(t, wait, 10*time.Millisecond, "the victim's reader blocked in XREAD on another connection", func() bool {
			return len(blockedInXread(t, raw)) == 2 && !slices.Contains(blockedInXread(t, raw), silenced)
		})
		return renewed
	}},
	// The victim's subscriptions' connection alone stops carrying what the
	// victim sends (a middlebox dropping one flow one way), while new
	// connections pass: the victim still reads the other node's
	// broadcasts there, so its late probe looks like one behind a burst,
	// and Redis answers on other connections. A probe published aside, on
	// another connection, comes back first (probe.go). rueidis spreads the
	// commands over its pipelined connections (two on two cores; the
	// subscriptions ride the first), and every other probe goes out on the
	// silent one. The fault lasts until the victim closed it. Detected
	// in at most 1.2 s by design (two ProbeIntervals, the first probe
	// going out on the other connection, and ProbeTimeout/2), where
	// waiting for the busy connection took up to 4.4 s; the bound, 3 s,
	// is against that regression, with room for inject's own round trips
	// and a loaded machine.
	{name: "blackhole-subscriber-to-redis", modes: []faultMode{faultClassic, faultStreams}, reportsLoss: true, detectWithin: 3 * time.Second, inject: func(t testing.TB, e *faultEnv) time.Time {
		raw := rawClient(t, redisadapter.Standalone{Addr: e.srv.Addr()})
		before := e.victim.a.Stats().ProbeFailures
		await.True(t, wait, 10*time.Millisecond, "the victim's subscriptions' connection silenced one way", func() bool {
			for _, c := range clientFields(t, raw) {
				if c["sub"] != "0" || c["psub"] != "0" {
					if e.px.BlackholeConn(c["addr"], faultproxy.ToServer) { // the other node's are not the proxy's
						return true
					}
				}
			}
			return false
		})
		await.True(t, 4*wait, 10*time.Millisecond, "the silenced connection given up", func() bool {
			return e.victim.a.Stats().ProbeFailures > before && e.px.Silent() == 0
		})
		return time.Now()
	}},
	// Redis cuts off a subscriber whose output buffer passes the limit:
	// the victim reads slowly (the proxy) while the other node bursts.
	// Streams mode reads its broadcasts with XREAD, outside the pub/sub
	// limit.
	{name: "pubsub-output-limit", modes: []faultMode{faultClassic}, reportsLoss: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		raw := rawClient(t, redisadapter.Standalone{Addr: e.srv.Addr()})
		ctx := context.Background()
		require.NoError(t, raw.Do(ctx, raw.B().ConfigSet().ParameterValue().
			ParameterValue("client-output-buffer-limit", "pubsub 256kb 0 0").Build()).Error())
		// Redis 7.0 has no INFO field counting the cuts: a subscriber
		// connection gone from CLIENT LIST is one (nothing else closes it
		// here). The victim hears of it only once the proxy has read what
		// was queued before, or from its probe.
		subscribers := func() map[string]bool {
			list, err := raw.Do(ctx, raw.B().ClientList().Build()).ToString()
			require.NoError(t, err)
			ids := map[string]bool{}
			for _, line := range strings.Split(list, "\n") {
				if strings.Contains(line, " psub=1 ") {
					ids[strings.Fields(strings.TrimPrefix(line, "txt:"))[0]] = true
				}
			}
			return ids
		}
		before := subscribers()
		require.NotEmpty(t, before)
		cut := func() bool {
			now := subscribers()
			for id := range before {
				if !now[id] {
					return true
				}
			}
			return false
		}
		e.px.SlowRead(1 << 10)
		defer e.px.SlowRead(0)
		burst := strings.Repeat("x", 1<<10)
		for i := 0; !cut(); i++ {
			require.Less(t, i, 100, "Redis never cut the slow subscriber off")
			for range 100 {
				_ = e.other.a.To("burst").Emit(ctx, "burst", burst)
			}
			// Paces the bursts. The other node may be cut off too (Valkey
			// did): its failures are counted as reported.
			_ = e.other.a.Flush(ctx)
		}
		return time.Now()
	}},
	// Sharded pub/sub: the master serving the room's channel freezes for
	// 500 ms, below the cluster's node timeout (1 s) and the probe's wait
	// (800 ms): no failover, and the nodes ride it out with late
	// deliveries.
	{name: "sigstop-500ms-room-master", modes: []faultMode{faultSharded}, ownCluster: true, quiet: true, inject: freezeRoomMaster(500 * time.Millisecond)},
	// Sharded pub/sub: the master serving the room's channel freezes for
	// 3 s, longer than the cluster's node timeout (1 s), so its replica is
	// promoted meanwhile; thawed, it learns it was replaced and serves as
	// a replica. The nodes' room connections to it go silent: each node's
	// probe on that connection finds it, and renews it on the new master.
	// The thawed master executes the SPUBLISHes it had received before it
	// hears of the failover, and answers that they reached none of its
	// subscribers: they are counted failed (some reach the promoted
	// replica's subscribers through the cluster bus all the same). A
	// broadcast the promoted master delivers to its publisher's renewed
	// subscription alone, before the other node's is back, is answered as
	// delivered: the other node's gap notice, once its channel is
	// subscribed on the new master, has it counted (shard.readAt).
	{name: "sigstop-3s-room-master", modes: []faultMode{faultSharded}, ownCluster: true, reportsLoss: true, inject: freezeRoomMaster(3 * time.Second)},
	// Sharded pub/sub: Redis cuts off a shard channel's subscribers whose
	// output buffer passes the pubsub class's limit (SSUBSCRIBE makes a
	// client a pub/sub one, as SUBSCRIBE does). No proxy can slow a
	// cluster's subscriber down, so a message larger than the limit does
	// it: Redis queues it to every subscriber of the room's channel (both
	// nodes) before writing, and closes them all.
	{name: "pubsub-output-limit", modes: []faultMode{faultSharded}, ownCluster: true, inject: func(t testing.TB, e *faultEnv) time.Time {
		ctx := context.Background()
		channel := defaultNames.room("/", "post:0")
		master := slotOwner(t, e.cluster, channel)
		require.NotNil(t, master)
		for _, srv := range e.cluster.Nodes {
			raw := rawClient(t, redisadapter.Standalone{Addr: srv.Addr()})
			require.NoError(t, raw.Do(ctx, raw.B().ConfigSet().ParameterValue().
				ParameterValue("client-output-buffer-limit", "pubsub 64kb 0 0").Build()).Error())
		}
		raw := rawClient(t, redisadapter.Standalone{Addr: master.Addr()})
		shardSubscribers := func() map[string]bool {
			list, err := raw.Do(ctx, raw.B().ClientList().Build()).ToString()
			require.NoError(t, err)
			ids := map[string]bool{}
			for _, line := range strings.Split(list, "\n") {
				if strings.Contains(line, " ssub=") && !strings.Contains(line, " ssub=0 ") {
					ids[strings.Fields(strings.TrimPrefix(line, "txt:"))[0]] = true
				}
			}
			return ids
		}
		// The nodes' other shard channels on this master (the namespace's,
		// a node's own) are on connections of their own, and not cut.
		before := shardSubscribers()
		n, err := raw.Do(ctx, raw.B().PubsubShardnumsub().Channel(channel).Build()).AsIntMap()
		require.NoError(t, err)
		require.EqualValues(t, 2, n[channel], "both nodes subscribe to the room's channel")
		require.NoError(t, raw.Do(ctx, raw.B().Spublish().Channel(channel).Message(strings.Repeat("x", 256<<10)).Build()).Error())
		at := time.Now()
		await.True(t, wait, 10*time.Millisecond, "Redis cut the room's subscribers off", func() bool {
			now, gone := shardSubscribers(), 0
			for id := range before {
				if !now[id] {
					gone++
				}
			}
			return gone >= 2
		})
		return at
	}},
	// The master stops answering (SIGSTOP) long enough for the sentinels
	// to elect its replica, then comes back with its connections open and
	// calls itself master for seconds before the sentinels demote it: a
	// node whose connections went back to it is on the wrong server until
	// it moves. Its gate stays closed meanwhile (the sentinels are asked
	// before it reopens: probe.go's checkRole). The master refuses writes
	// without a replica (min-replicas-to-write, as docs/operations.md
	// advises for streams mode): the entries queued during the freeze,
	// which it would otherwise take at the thaw and drop when it resyncs,
	// are refused (NOREPLICAS) and resent to the new master.
	{name: "sentinel-failover", modes: []faultMode{faultClassic, faultStreams}, sentinel: true,
		inject: func(t testing.TB, e *faultEnv) time.Time {
			old := e.set.Master.Addr()
			raw := rawClient(t, redisadapter.Standalone{Addr: old})
			require.NoError(t, raw.Do(context.Background(), raw.B().ConfigSet().ParameterValue().
				ParameterValue("min-replicas-to-write", "1").ParameterValue("min-replicas-max-lag", "1").Build()).Error())
			e.set.Master.Freeze(t)
			elected := waitFor(t, "a new master elected", func() bool {
				m, err := e.set.CurrentMaster(context.Background())
				return err == nil && m != old
			})
			e.set.Master.Thaw(t)
			return elected
		}},
}

// blockedInXread returns the addresses of the clients blocked in XREAD,
// as CLIENT LIST gives them: the stream readers' connections.
func blockedInXread(t testing.TB, raw rueidis.Client) []string {
	var addrs []string
	for _, c := range clientFields(t, raw) {
		if c["cmd"] == "xread" && strings.Contains(c["flags"], "b") {
			addrs = append(addrs, c["addr"])
		}
	}
	return addrs
}

// clientFields returns the fields of each client CLIENT LIST shows.
func clientFields(t testing.TB, raw rueidis.Client) []map[string]string {
	list, err := raw.Do(context.Background(), raw.B().ClientList().Build()).ToString()
	require.NoError(t, err)
	var clients []map[string]string
	for _, line := range strings.Split(strings.TrimPrefix(list, "txt:"), "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		if len(fields) > 0 {
			clients = append(clients, fields)
		}
	}
	return clients
}

// freezeRoomMaster is a fault that freezes the master serving the
// channel of the probe's room (sharded) for d.
func freezeRoomMaster(d time.Duration) func(testing.TB, *faultEnv) time.Time {
	return func(t testing.TB, e *faultEnv) time.Time {
		master := slotOwner(t, e.cluster, defaultNames.room("/", "post:0"))
		require.NotNil(t, master)
		master.Freeze(t)
		defer master.Thaw(t)
		return hold(d)
	}
}

// faultResult is what one run of a case measured.
type faultResult struct {
	detected  time.Duration // from the fault's start until a node said so; -1: never
	recovered time.Duration // from the fault's end until broadcasts flow again both ways; -1: not within 30 s
	accepted  int           // broadcasts Emit returned nil for
	refused   int           // broadcasts Emit returned an error for
	lost      int           // accepted, never received by the other node's client
	reported  int           // PublishFailures added on both nodes
	probes    int           // ProbeFailures added on the victim
	// lostOutside is how many of lost were emitted before the fault began
	// or after it ended, broadcasts flowed again and neither node said
	// anything was wrong any more: none should be.
	lostOutside int
}

func (r faultResult) String() string {
	never := func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("detected %s, recovered %s, accepted %d, refused %d, lost %d, reported failed %d, probes missed %d, lost outside the fault %d",
		never(r.detected), never(r.recovered), r.accepted, r.refused, r.lost, r.reported, r.probes, r.lostOutside)
}

// runFault starts the case's fleet in mode, lets broadcasts flow, injects
// the fault and measures it.
func runFault(t testing.TB, fc faultCase, mode faultMode) faultResult {
	t.Helper()
	e := &faultEnv{}
	switch {
	case mode.cluster != nil && fc.ownCluster:
		e.cluster = redistest.StartCluster(t)
		e.victim = startNode(t, mode.cluster(e.cluster), nil)
		e.other = startNode(t, mode.cluster(e.cluster), nil)
	case mode.cluster != nil:
		// A fault on the victim's own proxies leaves the cluster as it
		// was. The cases that share it run at once: a key of its own
		// keeps each case's messages (gap notices included) to its nodes.
		e.cluster = sharedCluster(t)
		victim := mode.cluster(e.cluster)
		if fc.network {
			victim, e.px = proxied(t, e.cluster.Nodes, victim)
		}
		opts := &redisadapter.Options{Key: uniqueKey(t)}
		e.victim = startNode(t, victim, opts)
		e.other = startNode(t, mode.cluster(e.cluster), opts)
	case fc.sentinel, mode.conn == nil && mode.sent != nil:
		e.set = redistest.StartSentinel(t)
		victim := mode.sent(e.set)
		if fc.network {
			victim, e.px = proxied(t, []*redistest.Server{e.set.Master, e.set.Replica}, victim)
		}
		e.victim = startNode(t, victim, nil)
		e.other = startNode(t, mode.sent(e.set), nil)
	default:
		e.srv = redistest.Start(t)
		px := faultproxy.Start(t, e.srv.Addr())
		e.px = proxies{px}
		e.victim = startNode(t, mode.conn(px.Addr()), nil)
		e.other = startNode(t, mode.conn(e.srv.Addr()), nil)
	}
	fleet := []*node{e.victim, e.other}
	p := newProbe(t, fleet, 1, 0)
	marks := newMarkClock(t, fleet)
	if mode.streams() {
		p.drain = 5 * time.Second // entries resent after the fault come late
	}
	p.start()
	defer p.stop() // a failed run stops broadcasting too
	started := time.Now()
	waitFor(t, "broadcasts flow both ways", func() bool { _, ok := p.flowingBoth(started); return ok })
	waitFor(t, "a probe came back", func() bool { return e.victim.a.Stats().ProbeLag > 0 })
	_, ok := marks.flowAgain(time.Now(), wait)
	require.True(t, ok, "marks flow both ways")
	// Counted from here: before, a room's channel may not be subscribed
	// yet (sharded mode subscribes after the join).
	steady := time.Now()
	before := []redisadapter.Stats{e.victim.a.Stats(), e.other.a.Stats()}

	// The watcher records when a node first said something was wrong (the
	// victim, but a fault on Redis may hit the other node first: Valkey
	// cut the other node off in the output-buffer case), and when one last
	// did (Ping failing, an outage or a missed probe counted): a broadcast
	// lost after that is lost silently.
	var first, last atomic.Int64 // unix nanoseconds
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		seen := slices.Clone(before)
		for {
			for i, n := range []*node{e.victim, e.other} {
				s := n.a.Stats()
				if n.a.Ping(context.Background()) != nil || s.Outages != seen[i].Outages || s.ProbeFailures != seen[i].ProbeFailures {
					now := time.Now().UnixNano()
					last.Store(now)
					first.CompareAndSwap(0, now)
				}
				seen[i] = s
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	faultAt := time.Now()
	ended := fc.inject(t, e)
	recovered, ok := marks.flowAgain(ended, 30*time.Second)
	if !ok {
		recovered = -1 // never: reported, and failed by TestFaults
	}
	time.Sleep(time.Second) // steady traffic after the recovery
	p.stop()
	close(stop)
	watch.Wait()

	r := faultResult{detected: -1, recovered: recovered}
	if at := first.Load(); at != 0 {
		r.detected = time.Unix(0, at).Sub(faultAt)
	}
	quietAgain := ended.Add(max(recovered, 0))
	if at := time.Unix(0, last.Load()); at.After(quietAgain) {
		quietAgain = at
	}
	// A broadcast in flight when the fault began or a renewal happened
	// (a few 20 ms ticks) counts as lost in the fault.
	const inFlight = 100 * time.Millisecond
	r.accepted, r.refused, r.lost, r.lostOutside = p.tally(steady, faultAt.Add(-inFlight), quietAgain.Add(inFlight))
	after := []redisadapter.Stats{e.victim.a.Stats(), e.other.a.Stats()}
	for i := range after {
		r.reported += int(after[i].PublishFailures - before[i].PublishFailures)
	}
	r.probes = int(after[0].ProbeFailures - before[0].ProbeFailures)
	return r
}

// flowingBoth returns how long after since a broadcast each node emitted
// after since first reached the other node's client (the later of the
// two), and whether both have.
func (p *probe) flowingBoth(since time.Time) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var latest time.Duration
	for from := range p.fleet {
		var first time.Duration = -1
		for tick, s := range p.sent {
			if s.from != from || s.at.Before(since) {
				continue
			}
			for ci := range p.clients {
				if at, ok := p.got[[3]int{tick, 0, ci}]; ci != from && ok {
					first = at.Sub(since)
				}
			}
			if first >= 0 {
				break
			}
		}
		if first < 0 {
			return 0, false
		}
		latest = max(latest, first)
	}
	return latest, true
}

// markEvery is how often each node emits a mark while a markClock waits
// for broadcasts to flow again.
const markEvery = 2 * time.Millisecond

// markClock measures when broadcasts flow again after a fault on a finer
// clock than the probe's broadcasts, which each node emits every 40 ms
// (the nodes take turns every 20 ms) and which would add up to 40 ms to
// the figure: each node has a client of its own in a room of marks, and
// during a measure each node emits a mark there every markEvery, each
// from a goroutine of its own (an Emit that waits does not hold the next
// ones back), until the other node's client has received one.
type markClock struct {
	fleet []*node
	round atomic.Int64 // the measure under way; marks of earlier ones are late and ignored

	mu    sync.Mutex
	first map[[2]int64]time.Time // {round, from} -> the first arrival at the other node's client
}

// markRoom is the room of the marks' clients.
const markRoom = "marks"

// newMarkClock connects a client to each node of a two-node fleet, into
// markRoom, and reads the marks they receive until the test ends.
func newMarkClock(t testing.TB, fleet []*node) *markClock {
	m := &markClock{fleet: fleet, first: map[[2]int64]time.Time{}}
	done := make(chan struct{})
	var readers sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		readers.Wait()
	})
	for ci, n := range fleet {
		c := n.client(t, markRoom)
		readers.Go(func() {
			for {
				select {
				case e := <-c.Events:
					var round, from int64
					if e.Name != "mark" || len(e.Args) != 2 || json.Unmarshal(e.Args[0], &round) != nil || json.Unmarshal(e.Args[1], &from) != nil || from == int64(ci) {
						continue
					}
					m.mu.Lock()
					if _, seen := m.first[[2]int64{round, from}]; !seen {
						m.first[[2]int64{round, from}] = time.Now()
					}
					m.mu.Unlock()
				case <-done:
					return
				}
			}
		})
	}
	return m
}

// flowAgain emits marks from each node from now on until each node's
// marks reached the other node's client, or until since+within: it
// returns how long after since the later of the two first arrived, and
// whether both did.
func (m *markClock) flowAgain(since time.Time, within time.Duration) (time.Duration, bool) {
	round := m.round.Add(1)
	arrived := func() (time.Duration, bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		var latest time.Duration
		for from := range m.fleet {
			at, ok := m.first[[2]int64{round, int64(from)}]
			if !ok {
				return 0, false
			}
			latest = max(latest, at.Sub(since))
		}
		return latest, true
	}
	var emits sync.WaitGroup
	defer emits.Wait()
	tick := time.NewTicker(markEvery)
	defer tick.Stop()
	for deadline := since.Add(within); time.Now().Before(deadline); <-tick.C {
		if d, ok := arrived(); ok {
			return d, true
		}
		for from, n := range m.fleet {
			emits.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_ = n.a.To(markRoom).Emit(ctx, "mark", round, from)
			})
		}
	}
	return arrived()
}

// tally counts the broadcasts emitted since steady: accepted, refused,
// lost (accepted, not received by the other node's client), and of those
// lost, the ones emitted outside [from, to].
func (p *probe) tally(steady, from, to time.Time) (accepted, refused, lost, outside int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tick, s := range p.sent {
		switch {
		case s.at.Before(steady):
			continue
		case !s.accepted[0]:
			refused++
			continue
		}
		accepted++
		if _, got := p.got[[3]int{tick, 0, 1 - s.from}]; !got {
			lost++
			if s.at.Before(from) || s.at.After(to) {
				outside++
			}
		}
	}
	return accepted, refused, lost, outside
}

// TestFaults runs the fault matrix. The bounds are generous, for a loaded
// machine; BenchmarkFaults reports the figures.
func TestFaults(t *testing.T) {
	for _, fc := range faultCases {
		for _, mode := range fc.modes {
			t.Run(fc.name+"/"+mode.name, func(t *testing.T) {
				if fc.long && testing.Short() {
					t.Skip("a 15 s fault: runs without -short (CI does)")
				}
				// Each case has its own Redis, proxy and nodes; -parallel
				// (GOMAXPROCS by default) bounds how many run at once.
				t.Parallel()
				if fc.broken != "" {
					t.Skip("not recovered yet: " + fc.broken)
				}
				r := runFault(t, fc, mode)
				t.Logf("%s", r)
				if fc.quiet {
					require.Equal(t, time.Duration(-1), r.detected, "a slow but working connection is not taken for a dead one")
					require.Zero(t, r.lost, "nothing lost")
					require.Zero(t, r.refused, "nothing refused")
				} else {
					require.GreaterOrEqual(t, r.detected, time.Duration(0), "no node said the fault happened")
					require.Less(t, r.detected, cmp.Or(fc.detectWithin, detectWithin))
				}
				require.GreaterOrEqual(t, r.recovered, time.Duration(0), "broadcasts flow again")
				require.Less(t, r.recovered, 2*wait, "broadcasts flow again")
				require.Zero(t, r.lostOutside, "broadcasts lost outside the fault")
				if mode.streams() {
					require.Zero(t, r.lost, "streams mode loses nothing it accepted")
				} else if fc.reportsLoss {
					require.LessOrEqual(t, r.lost, r.reported, "broadcasts lost unreported")
				}
			})
		}
	}
}

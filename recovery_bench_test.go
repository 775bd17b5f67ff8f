package redisadapter_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// BenchmarkRecovery injects one fault per mode into a fleet of three
// nodes that broadcast comments to 12 posts every 20 ms (each node in
// turn), with one client per node in every post, and reports on one clock:
//
//   - recovered-ms: from the fault until Redis serves again (the restarted
//     server answers, the new master is elected, the replica is promoted);
//   - flow-min/med/max-ms: from then until broadcasts on a post reach both
//     other nodes' clients again, over the 12 posts;
//   - lost: broadcasts Emit accepted (returned nil) that did not reach both
//     other nodes' clients; refused: broadcasts Emit refused (an error).
//
// Standalone Redis is down 2 s; the Sentinel set (down-after 1000 ms) and
// the cluster (node-timeout 1000 ms) lose the master that takes the
// namespace's publishes.
//
// cluster-sharded-own-rooms is the fleet of an application whose nodes each
// hold rooms of their own: 16 rooms per node, each with the node's one
// client only, spread over the three masters (so every node holds room
// channels on every shard, a third of them on the master that fails), and
// each node in turn broadcasts to every room; flow is per room, until the
// room's node receives.
//
//	go test -run '^$' -bench Recovery -benchtime 1x .
func BenchmarkRecovery(b *testing.B) {
	b.Run("standalone", func(b *testing.B) {
		recovery(b, 0, func(b *testing.B) (redisadapter.Connector, func() time.Time) {
			srv := redistest.Start(b)
			return redisadapter.Standalone{Addr: srv.Addr()}, func() time.Time {
				srv.Stop(b)
				time.Sleep(2 * time.Second) // the outage
				srv.Restart(b)              // returns once Redis answers
				return time.Now()
			}
		})
	})
	b.Run("sentinel", func(b *testing.B) {
		recovery(b, 0, func(b *testing.B) (redisadapter.Connector, func() time.Time) {
			set := redistest.StartSentinel(b)
			return redisadapter.Sentinel{MasterName: redistest.MasterName, Addrs: set.Addrs()}, func() time.Time {
				set.Master.Stop(b)
				return waitFor(b, "a new master elected", func() bool {
					m, err := set.CurrentMaster(context.Background())
					return err == nil && m != set.Master.Addr()
				})
			}
		})
	})
	for _, cl := range []struct {
		name         string
		sharded      bool
		roomsPerNode int
	}{{"cluster-classic", false, 0}, {"cluster-sharded", true, 0}, {"cluster-sharded-own-rooms", true, 16}} {
		b.Run(cl.name, func(b *testing.B) {
			recovery(b, cl.roomsPerNode, func(b *testing.B) (redisadapter.Connector, func() time.Time) {
				_, c, fault := clusterFailoverFault(b, cl.sharded)
				return c, fault
			})
		})
	}
}

// clusterFailoverFault starts a cluster, and returns it, a connector to it
// and a fault that stops the master taking the namespace's publishes and
// returns once a replica took its slots over.
func clusterFailoverFault(b testing.TB, sharded bool) (*redistest.ClusterSet, redisadapter.Connector, func() time.Time) {
	set := redistest.StartCluster(b)
	// The namespace's publishes go to the owner of one slot: "/"
	// (classic) or the namespace's channel (sharded).
	key := "/"
	if sharded {
		key = defaultNames.namespace("/")
	}
	victim := slotOwner(b, set, key)
	return set, redisadapter.Cluster{Addrs: set.Addrs(), Sharded: sharded}, func() time.Time {
		victim.Stop(b)
		return waitFor(b, "a replica promoted", func() bool { return slotOwner(b, set, key) != nil })
	}
}

// recovery runs the probe around the fault that setup returns: fault
// injects it and returns when Redis serves again. With roomsPerNode 0,
// each node's client is in each of 12 posts; otherwise each node's client
// is alone in roomsPerNode posts of its own.
func recovery(b *testing.B, roomsPerNode int, setup func(*testing.B) (redisadapter.Connector, func() time.Time)) {
	var recovered, flowMin, flowMed, flowMax, lost, refused []float64
	for range b.N {
		b.StopTimer()
		c, fault := setup(b)
		opts := &redisadapter.Options{Key: "socket.io", RequestTimeout: time.Second}
		fleet := []*node{startNode(b, c, opts), startNode(b, c, opts), startNode(b, c, opts)}
		p := newProbe(b, fleet, 12, roomsPerNode)
		p.awaitSubscribed(b, c)
		p.start()
		time.Sleep(time.Second) // steady traffic before the fault
		b.StartTimer()
		faultAt := time.Now()
		servedAt := fault()
		b.StopTimer()
		// Traffic goes on until every post flows again, and 1 s more.
		waitFor(b, "broadcasts on every post flow again", func() bool { return p.flowing(servedAt) })
		time.Sleep(time.Second)
		p.stop()
		flows, _ := p.flows(servedAt)
		recovered = append(recovered, ms(servedAt.Sub(faultAt)))
		flowMin = append(flowMin, ms(slices.Min(flows)))
		flowMed = append(flowMed, ms(median(flows)))
		flowMax = append(flowMax, ms(slices.Max(flows)))
		l, r := p.losses()
		lost, refused = append(lost, float64(l)), append(refused, float64(r))
	}
	for unit, v := range map[string][]float64{"recovered-ms": recovered, "flow-min-ms": flowMin, "flow-med-ms": flowMed,
		"flow-max-ms": flowMax, "lost": lost, "refused": refused} {
		b.ReportMetric(median(v), unit)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// probe broadcasts numbered comments to every post from each node in turn
// and records, on one clock, when each was emitted and when each client
// received it.
type probe struct {
	fleet   []*node
	clients []*siotest.Client // by node
	posts   int
	members [][]int       // by post: the clients in it
	quiet   chan struct{} // closed to stop broadcasting
	stopped chan struct{} // closed to stop reading
	sender  sync.WaitGroup
	readers sync.WaitGroup
	drain   time.Duration // how long stop waits for the last broadcasts
	once    sync.Once

	mu   sync.Mutex
	sent []sent               // by tick
	got  map[[3]int]time.Time // {tick, post, client} -> received
}

type sent struct {
	from     int
	at       time.Time
	accepted []bool // by post: Emit returned nil
}

// newProbe connects one client to each node of fleet: with roomsPerNode
// 0, into each of shared posts; otherwise into roomsPerNode posts of its own.
func newProbe(b testing.TB, fleet []*node, shared, roomsPerNode int) *probe {
	p := &probe{fleet: fleet, quiet: make(chan struct{}), stopped: make(chan struct{}), got: map[[3]int]time.Time{},
		drain: time.Second}
	rooms := make([][]string, len(fleet))
	if roomsPerNode == 0 {
		p.posts = shared
		for post := range p.posts {
			p.members = append(p.members, nil)
			for ci := range fleet {
				rooms[ci] = append(rooms[ci], fmt.Sprintf("post:%d", post))
				p.members[post] = append(p.members[post], ci)
			}
		}
	} else {
		p.posts = roomsPerNode * len(fleet)
		for post := range p.posts {
			ci := post / roomsPerNode
			rooms[ci] = append(rooms[ci], fmt.Sprintf("post:%d", post))
			p.members = append(p.members, []int{ci})
		}
	}
	for ci, n := range fleet {
		p.clients = append(p.clients, n.client(b, rooms[ci]...))
	}
	return p
}

// awaitSubscribed waits, with sharded pub/sub, until the nodes of each
// post's clients subscribe to its channel.
func (p *probe) awaitSubscribed(b testing.TB, c redisadapter.Connector) {
	if cl, ok := c.(redisadapter.Cluster); !ok || !cl.Sharded {
		return
	}
	raw := rawClient(b, c)
	for post, members := range p.members {
		ch := defaultNames.room("/", fmt.Sprintf("post:%d", post))
		waitFor(b, "every member node subscribed to "+ch, func() bool {
			n, err := raw.Do(context.Background(), raw.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
			return err == nil && n[ch] == int64(len(members))
		})
	}
}

func (p *probe) start() {
	for ci, cl := range p.clients {
		p.readers.Go(func() {
			for {
				select {
				case e := <-cl.Events:
					var post, tick int
					if e.Name != "comment" || len(e.Args) != 2 {
						continue
					}
					if _, err := fmt.Sscan(string(e.Args[0]), &post); err != nil {
						continue
					}
					if _, err := fmt.Sscan(string(e.Args[1]), &tick); err != nil {
						continue
					}
					p.mu.Lock()
					p.got[[3]int{tick, post, ci}] = time.Now()
					p.mu.Unlock()
				case <-p.stopped:
					return
				}
			}
		})
	}
	p.sender.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for tick := 0; ; tick++ {
			select {
			case <-t.C:
			case <-p.quiet:
				return
			}
			from := tick % len(p.fleet)
			s := sent{from: from, at: time.Now(), accepted: make([]bool, p.posts)}
			for post := range p.posts {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				s.accepted[post] = p.fleet[from].a.To(fmt.Sprintf("post:%d", post)).Emit(ctx, "comment", post, tick) == nil
				cancel()
			}
			p.mu.Lock()
			p.sent = append(p.sent, s)
			p.mu.Unlock()
		}
	})
}

// stop stops broadcasting, gives the last broadcasts p.drain to arrive,
// and stops reading; it does so once, however often it is called.
func (p *probe) stop() {
	p.once.Do(func() {
		close(p.quiet)
		p.sender.Wait()
		deadline := time.Now().Add(p.drain)
		for l, _ := p.losses(); l > 0 && time.Now().Before(deadline); l, _ = p.losses() {
			time.Sleep(time.Millisecond)
		}
		close(p.stopped)
		p.readers.Wait()
	})
}

// flows returns, for each post, how long after since broadcasts emitted
// after since first reached every client of the other nodes, and whether
// every post flowed again (a post that did not has the time until now).
func (p *probe) flows(since time.Time) ([]time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]time.Duration, p.posts)
	all := true
	for post := range p.posts {
		out[post] = -1
		for tick, s := range p.sent {
			if s.at.Before(since) {
				continue
			}
			var last time.Time
			everyone, remote := true, false
			for _, ci := range p.members[post] {
				if ci == s.from {
					continue
				}
				remote = true
				at, ok := p.got[[3]int{tick, post, ci}]
				if !ok {
					everyone = false
					break
				}
				if at.After(last) {
					last = at
				}
			}
			if everyone && remote {
				out[post] = last.Sub(since)
				break
			}
		}
		if out[post] < 0 {
			out[post], all = time.Since(since), false
		}
	}
	return out, all
}

// flowing reports whether every post flows again after since.
func (p *probe) flowing(since time.Time) bool {
	_, all := p.flows(since)
	return all
}

// losses counts broadcasts accepted but not received by every other
// node's client, and broadcasts refused.
func (p *probe) losses() (lost, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tick, s := range p.sent {
		for post, ok := range s.accepted {
			if !ok {
				refused++
				continue
			}
			for _, ci := range p.members[post] {
				if _, got := p.got[[3]int{tick, post, ci}]; ci != s.from && !got {
					lost++
					break
				}
			}
		}
	}
	return lost, refused
}

// waitFor polls cond every millisecond for up to 60 s and returns when it
// held.
func waitFor(b testing.TB, what string, cond func() bool) time.Time {
	b.Helper()
	await.True(b, 60*time.Second, time.Millisecond, what, cond)
	return time.Now()
}

// slotOwner returns the running master that owns key's slot, or nil: only
// the owner answers a GET for the key without a redirection.
func slotOwner(b testing.TB, set *redistest.ClusterSet, key string) *redistest.Server {
	b.Helper()
	for _, n := range set.Nodes {
		cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{n.Addr()}, ForceSingleClient: true,
			DisableCache: true, DisableRetry: true})
		if err != nil {
			continue // stopped
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = cl.Do(ctx, cl.B().Get().Key(key).Build()).Error()
		cancel()
		cl.Close()
		if rueidis.IsRedisNil(err) || err == nil {
			return n
		}
	}
	return nil
}

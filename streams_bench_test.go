package redisadapter_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkStreamsFanout is BenchmarkFanout's adapter case, pub/sub and
// streams mode side by side on one Redis: node A broadcasts b.N events of
// 100 bytes to a room, fanoutClients clients of node B receive them (bench/run
// runs it with BenchmarkFanout).
//
//	go test -run '^$' -bench StreamsFanout -benchtime 20000x .
func BenchmarkStreamsFanout(b *testing.B) {
	payload := strings.Repeat("x", 100)
	for _, mode := range []string{"pubsub", "streams"} {
		b.Run(mode, func(b *testing.B) {
			srv := redistest.Start(b)
			var c redisadapter.Connector = redisadapter.Standalone{Addr: srv.Addr()}
			if mode == "streams" {
				// A MaxLen above the burst: this measures throughput. With the
				// default (10,000) a 20,000-event burst outruns the reader and
				// the trimmed part is lost for it (counted in StreamGaps).
				c = redisadapter.Streams{Connector: c, MaxLen: 1_000_000}
			}
			a, recv := startNode(b, c, nil), startNode(b, c, nil)
			fanout(b, recv.url, func(n int) {
				parallel(b, n, publishers, func() error { return a.a.To("room").Emit(context.Background(), "m", 0, payload) })
			})
		})
	}
}

// BenchmarkStreamsKillSoak: three nodes broadcast to a room at a steady
// 2,000 events/s in all (each in turn), one client per node in the room,
// for 4 s, while every node's receiving connections (subscriptions, and in
// streams mode the XREAD connection) are killed with CLIENT KILL every
// 500 ms. With RESP3, rueidis carries subscriptions on the connection that
// also publishes, so a kill also fails the publishes in flight on it. It
// reports, per mode, lost: deliveries missed (a broadcast Emit accepted
// that a client of another node never got, counted per client);
// publish-failed: accepted broadcasts whose PUBLISH or XADD then failed
// (Flush reports them; each is lost for both other nodes); dup: deliveries
// received twice; refused: broadcasts Emit refused; in streams mode,
// resent: entries sent again after a try that failed in flight, and
// dup-dropped: second copies the readers dropped.
//
//	go test -run '^$' -bench StreamsKillSoak -benchtime 1x .
func BenchmarkStreamsKillSoak(b *testing.B) {
	for _, mode := range []string{"pubsub", "streams"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				faultSoak(b, mode, false)
			}
		})
	}
}

// BenchmarkStreamsRestartSoak is the kill soak's load with another fault:
// halfway through, the Redis, which persists (AOF, appendfsync always), is
// killed (SIGKILL) and restarted, while the nodes keep broadcasting. It
// reports the same counts.
//
//	go test -run '^$' -bench StreamsRestartSoak -benchtime 1x .
func BenchmarkStreamsRestartSoak(b *testing.B) {
	for _, mode := range []string{"pubsub", "streams"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				faultSoak(b, mode, true)
			}
		})
	}
}

func faultSoak(b *testing.B, mode string, restart bool) {
	b.StopTimer()
	var srv *redistest.Server
	if restart {
		srv = redistest.Start(b, "--appendonly", "yes", "--appendfsync", "always", "--dir", "{dir}")
	} else {
		srv = redistest.Start(b)
	}
	var c redisadapter.Connector = redisadapter.Standalone{Addr: srv.Addr()}
	if mode == "streams" {
		c = redisadapter.Streams{Connector: c}
	}
	fleet := []*node{startNode(b, c, nil), startNode(b, c, nil), startNode(b, c, nil)}
	type counts struct {
		mu   sync.Mutex
		seen map[int]int // event id -> times received
	}
	got := make([]*counts, len(fleet))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, n := range fleet {
		cl := n.client(b, "r")
		got[i] = &counts{seen: map[int]int{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case e := <-cl.Events:
					var id int
					if len(e.Args) == 1 && json0(e.Args[0], &id) {
						got[i].mu.Lock()
						got[i].seen[id]++
						got[i].mu.Unlock()
					}
				case <-stop:
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	raw := rawClient(b, c)
	b.StartTimer()

	var accepted sync.Map // id -> sender index
	var refused atomic.Int64
	const rate, soak = 2000, 4 * time.Second
	tick := time.NewTicker(time.Second / rate)
	kill := time.NewTicker(500 * time.Millisecond)
	if restart {
		kill.Stop()
	}
	halfway := time.After(soak / 2)
	restarted := make(chan struct{})
	end := time.After(soak)
	id := 0
loop:
	for {
		select {
		case <-halfway:
			if !restart {
				continue
			}
			go func() { // the nodes keep broadcasting meanwhile
				defer close(restarted)
				srv.Stop(b)
				srv.Restart(b)
			}()
		case <-tick.C:
			sender := id % len(fleet)
			if err := fleet[sender].a.To("r").Emit(context.Background(), "m", id); err != nil {
				refused.Add(1)
			} else {
				accepted.Store(id, sender)
			}
			id++
		case <-kill.C:
			_ = raw.Do(context.Background(), raw.B().ClientKill().TypePubsub().Build()).Error()
			killXreads(b, raw)
		case <-end:
			break loop
		}
	}
	tick.Stop()
	kill.Stop()
	if restart {
		<-restarted
	}
	for _, n := range fleet {
		_ = n.a.Flush(context.Background())
	}
	// Deliveries settle: wait until nothing new arrives for a second.
	total := func() (n int) {
		for _, g := range got {
			g.mu.Lock()
			n += len(g.seen)
			g.mu.Unlock()
		}
		return n
	}
	for last, idle := -1, time.Now(); time.Since(idle) < time.Second; time.Sleep(20 * time.Millisecond) {
		if n := total(); n != last {
			last, idle = n, time.Now()
		}
	}
	b.StopTimer()
	var lost, dup, sent int
	accepted.Range(func(k, v any) bool {
		sent++
		for i, g := range got {
			if i == v.(int) {
				continue // the sender's own client gets it locally
			}
			g.mu.Lock()
			switch n := g.seen[k.(int)]; {
			case n == 0:
				lost++
			case n > 1:
				dup += n - 1
			}
			g.mu.Unlock()
		}
		return true
	})
	var failed, resent, dropped uint64
	for _, n := range fleet {
		st := n.a.Stats()
		failed += st.PublishFailures
		resent += st.Resent
		dropped += st.StreamDuplicates
	}
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(failed), "publish-failed")
	b.ReportMetric(float64(dup), "dup")
	b.ReportMetric(float64(refused.Load()), "refused")
	b.ReportMetric(float64(resent), "resent")
	b.ReportMetric(float64(dropped), "dup-dropped")
	b.ReportMetric(float64(sent), "accepted")
}

// killXreads kills the connections blocked in XREAD (the stream readers).
func killXreads(b *testing.B, raw rueidis.Client) {
	list, err := raw.Do(context.Background(), raw.B().ClientList().Build()).ToString()
	if err != nil {
		b.Logf("client list: %v", err)
		return
	}
	// A verbatim string, whose text rueidis gives with its "txt:" format:
	// without the trim the first client's id is never parsed.
	for _, line := range strings.Split(strings.TrimPrefix(list, "txt:"), "\n") {
		if !strings.Contains(line, " cmd=xread ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				if id, err := strconv.ParseInt(v, 10, 64); err == nil {
					_ = raw.Do(context.Background(), raw.B().ClientKill().Id(id).Build()).Error()
				}
			}
		}
	}
}

func json0(raw json.RawMessage, v any) bool { return json.Unmarshal(raw, v) == nil }

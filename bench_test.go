package redisadapter_test

import (
	"context"
	"fmt"
	"slices"
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

// The adapter layer against the raw Redis ceiling, side by side in one run
// and interleaved by payload: 8 goroutines publish messages of a given
// size; a second node (or a plain subscriber) reads them all. No websocket
// clients: this is the cost of the layer itself (encode, publish, read,
// route, decode, select).
//
//	go test -run '^$' -bench Layer -benchtime 100000x .
const publishers = 8

func BenchmarkLayer(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(sizeName(size)+"/rueidis", func(b *testing.B) { ceiling(b, size, false, false) })
		// A fleet's shape: every node subscribes, the publishing one too,
		// so Redis writes each message twice and the publisher reads it
		// back (the adapter drops it unread beyond its head).
		b.Run(sizeName(size)+"/rueidis-publisher-subscribed", func(b *testing.B) { ceiling(b, size, true, false) })
		// The same shape, published as the adapter does: DoMulti batches
		// of up to 1,024 commands from one goroutine. The ceiling the
		// adapter's pipelined path is measured against.
		b.Run(sizeName(size)+"/rueidis-pipelined", func(b *testing.B) { ceiling(b, size, true, true) })
		b.Run(sizeName(size)+"/adapter", func(b *testing.B) { adapterLayer(b, size, publishers) })
		// The shapes users run: a go-socket.io handler, or a producer loop,
		// emits one message after another.
		b.Run(sizeName(size)+"/adapter-sequential", func(b *testing.B) { adapterLayer(b, size, 1) })
	}
}

func ceiling(b *testing.B, size int, publisherSubscribed, pipelined bool) {
	srv := redistest.Start(b)
	pub := rawClient(b, redisadapter.Standalone{Addr: srv.Addr()})
	sub := rawClient(b, redisadapter.Standalone{Addr: srv.Addr()})
	var received atomic.Int64
	subscribers := []rueidis.Client{sub}
	if publisherSubscribed {
		subscribers = append(subscribers, pub)
	}
	subscribed := make(chan struct{}, len(subscribers))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, c := range subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx := rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { subscribed <- struct{}{} })
			_ = c.Receive(hctx, c.B().Subscribe().Channel("bench").Build(), func(rueidis.PubSubMessage) {
				if i == 0 {
					received.Add(1)
				}
			})
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	for range subscribers {
		<-subscribed
	}
	payload := strings.Repeat("x", size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu0 := machineCPU(b)
	if pipelined {
		for sent := 0; sent < b.N; {
			cmds := make(rueidis.Commands, min(1024, b.N-sent))
			for i := range cmds {
				cmds[i] = pub.B().Publish().Channel("bench").Message(payload).Build()
			}
			for _, r := range pub.DoMulti(context.Background(), cmds...) {
				if err := r.Error(); err != nil {
					b.Fatal(err)
				}
			}
			sent += len(cmds)
		}
	} else {
		parallel(b, b.N, publishers, func() error {
			return pub.Do(context.Background(), pub.B().Publish().Channel("bench").Message(payload).Build()).Error()
		})
	}
	waitFor(b, "every message received", func() bool { return received.Load() >= int64(b.N) })
	b.StopTimer()
	reportMessages(b, cpu0)
}

// reportMessages reports messages per second and the machine's CPU time
// (Redis and both ends) per message: steadier than the rate on a shared
// machine, where a neighbour's burst stalls a run without costing it CPU.
func reportMessages(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(machineCPU(b)-cpu0)/float64(b.N)/float64(time.Microsecond), "cpu-µs/msg")
}

// adapterLayer measures Emit from goroutines goroutines to a node that
// routes and selects every message; Emit returns once a message is queued,
// so the run ends when the receiver has handled them all.
func adapterLayer(b *testing.B, size, goroutines int) {
	srv := redistest.Start(b)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	a, recv := startNode(b, c, nil), startNode(b, c, nil)
	payload := strings.Repeat("x", size-40) // the frame adds about 40 bytes
	before := recv.a.Stats().Received
	b.SetBytes(int64(size))
	b.ResetTimer()
	cpu0 := machineCPU(b)
	parallel(b, b.N, goroutines, func() error { return a.a.Of("/").Emit(context.Background(), "m", payload) })
	// Read, routed and selected: nothing left in the queues.
	waitFor(b, "every message received and handled", func() bool {
		st := recv.a.Stats()
		return st.Received-before >= uint64(b.N) && st.QueueDepth == 0
	})
	b.StopTimer()
	reportMessages(b, cpu0)
}

// parallel runs f n times over goroutines goroutines.
func parallel(b *testing.B, n, goroutines int, f func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := f(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func sizeName(n int) string {
	if n >= 1024 {
		return "1KB"
	}
	return "100B"
}

// Requests across the fleet: FetchSockets and AllRooms from one node to 3
// and to 10 nodes (in one process, one socket each), with p50 and p99. A
// request that times out fails the benchmark.
//
//	go test -run '^$' -bench Requests -benchtime 200x .
func BenchmarkRequests(b *testing.B) {
	srv := redistest.Start(b)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	for _, fleet := range []int{3, 10} {
		var nodes []*node
		opts := &redisadapter.Options{Key: fmt.Sprintf("fleet%d", fleet)} // apart from the other fleet
		for i := range fleet {
			n := startNode(b, c, opts)
			n.client(b, "room-"+strconv.Itoa(i%3))
			nodes = append(nodes, n)
		}
		for _, req := range []struct {
			name string
			do   func(context.Context) error
		}{
			{"FetchSockets", func(ctx context.Context) error {
				s, err := nodes[0].a.To("room-1").FetchSockets(ctx)
				if err == nil && len(s) != (fleet+1)/3 {
					err = fmt.Errorf("%d sockets", len(s))
				}
				return err
			}},
			{"AllRooms", func(ctx context.Context) error {
				_, err := nodes[0].a.Of("/").AllRooms(ctx)
				return err
			}},
		} {
			b.Run(fmt.Sprintf("%s/%dnodes", req.name, fleet), func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if err := req.do(context.Background()); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

// Latency at a steady 2,000 events/s, timestamps from one clock, side by
// side: the raw rueidis path (PUBLISH to a SUBSCRIBE callback) and this
// adapter (Emit on node A to receipt by a websocket client of node B), in
// pub/sub and in streams mode.
//
//	go test -run '^$' -bench Latency -benchtime 10000x .
func BenchmarkLatency(b *testing.B) {
	b.Run("rueidis", func(b *testing.B) {
		srv := redistest.Start(b)
		pub := rawClient(b, redisadapter.Standalone{Addr: srv.Addr()})
		sub := rawClient(b, redisadapter.Standalone{Addr: srv.Addr()})
		arrived := make(chan time.Duration, 64)
		subscribed := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			hctx := rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { close(subscribed) })
			_ = sub.Receive(hctx, sub.B().Subscribe().Channel("latency").Build(), func(m rueidis.PubSubMessage) {
				sent, _ := strconv.ParseInt(m.Message, 10, 64)
				arrived <- time.Since(time.Unix(0, sent))
			})
		}()
		defer func() { cancel(); wg.Wait() }()
		<-subscribed
		paced(b, arrived, func() error {
			return pub.Do(context.Background(), pub.B().Publish().Channel("latency").Message(strconv.FormatInt(time.Now().UnixNano(), 10)).Build()).Error()
		})
	})
	for _, mode := range []string{"adapter", "adapter-streams"} {
		b.Run(mode, func(b *testing.B) {
			srv := redistest.Start(b)
			var c redisadapter.Connector = redisadapter.Standalone{Addr: srv.Addr()}
			if mode == "adapter-streams" {
				c = redisadapter.Streams{Connector: c}
			}
			latencyThroughAdapter(b, c)
		})
	}
}

// latencyThroughAdapter is BenchmarkLatency through two nodes on c: Emit
// on one, receipt by a websocket client of the other.
func latencyThroughAdapter(b *testing.B, c redisadapter.Connector) {
	a, recv := startNode(b, c, nil), startNode(b, c, nil)
	cl := recv.client(b, "room")
	arrived := make(chan time.Duration, 64)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case e := <-cl.Events:
				sent, _ := strconv.ParseInt(string(e.Args[0]), 10, 64)
				arrived <- time.Since(time.Unix(0, sent))
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	paced(b, arrived, func() error {
		return a.a.To("room").Emit(context.Background(), "t", time.Now().UnixNano())
	})
}

// paced calls send b.N times at 2,000 a second, collects a latency from
// arrived for each, and reports p50, p99 and max.
func paced(b *testing.B, arrived <-chan time.Duration, send func() error) {
	const rate = 2000
	lat := make([]time.Duration, 0, b.N)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for len(lat) < b.N {
			select {
			case d := <-arrived:
				lat = append(lat, d)
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / rate)); wait > 0 {
			time.Sleep(wait)
		}
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	<-collected
	b.StopTimer()
	if len(lat) < b.N {
		b.Fatalf("%d of %d events arrived", len(lat), b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}

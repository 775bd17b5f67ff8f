package redisadapter_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkScaling spreads 1,000 or 3,000 sockets over 1, 2, 4 and 8
// in-process nodes and broadcasts to the whole namespace from the first:
// deliveries per second, and heap per socket (servers and test clients
// together). With -short only 1,000 sockets. (10,000 in-process test
// clients take longer to connect on two cores than a run can wait.)
//
//	go test -run '^$' -bench Scaling -benchtime 20x .
func BenchmarkScaling(b *testing.B) {
	srv := redistest.Start(b)
	c := redisadapter.Standalone{URL: srv.URL()}
	socketCounts := []int{1000, 3000}
	if testing.Short() {
		socketCounts = socketCounts[:1]
	}
	for _, sockets := range socketCounts {
		for _, nodes := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%dsockets/%dnodes", sockets, nodes), func(b *testing.B) {
				opts := &redisadapter.Options{Key: fmt.Sprintf("scale-%d-%d", sockets, nodes)}
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				var fleet []*node
				for range nodes {
					fleet = append(fleet, startNode(b, c, opts))
				}
				var delivered atomic.Int64
				var wg sync.WaitGroup
				stop := make(chan struct{})
				for i := range sockets {
					cl := fleet[i%nodes].client(b)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-cl.Events:
								delivered.Add(1)
							case <-stop:
								return
							}
						}
					}()
				}
				defer func() { close(stop); wg.Wait() }()
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ResetTimer()
				for i := range b.N {
					if err := fleet[0].a.Of("/").Emit(context.Background(), "m", i); err != nil {
						b.Fatal(err)
					}
				}
				reportDeliveries(b, &delivered, int64(b.N*sockets))
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(sockets)/1024, "heap-KiB/socket")
			})
		}
	}
}

package redisadapter_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// BenchmarkScaling spreads 1,000, 3,000 or 10,000 sockets over 1, 2, 4
// and 8 in-process nodes and broadcasts to the whole namespace from the
// first: deliveries per second, the machine's CPU time per 1,000, and the
// servers' heap per socket. The
// clients live in a second process (this test binary, run as
// clientsProcess): a socket costs a file descriptor on each side, and
// 10,000 of each would pass the machine's limit of 20,000 per process.
// With -short only 1,000 sockets.
//
//	go test -run '^$' -bench Scaling -benchtime 20x .
func BenchmarkScaling(b *testing.B) {
	srv := redistest.Start(b)
	c := redisadapter.Standalone{Addr: srv.Addr()}
	socketCounts := []int{1000, 3000, 10000}
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
				var urls []string
				for range nodes {
					n := startNode(b, c, opts)
					fleet = append(fleet, n)
					urls = append(urls, n.url)
				}
				delivered := startClients(b, urls, sockets)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				cpu0 := machineCPU(b)
				b.ResetTimer()
				for i := range b.N {
					if err := fleet[0].a.Of("/").Emit(context.Background(), "m", i); err != nil {
						b.Fatal(err)
					}
				}
				// A stall of a second or more (10,000 sockets on 2 shared
				// cores) shows as a slow rate, not as a loss.
				reportDeliveries(b, delivered, int64(b.N*sockets), 5*time.Second)
				reportMachineCPU(b, cpu0, delivered.Load())
				// What a loss would come from: a node that did not read
				// every broadcast (its subscription was down), or events
				// dropped on the way to sockets.
				var drops, resubscribes, short uint64
				for i, n := range fleet {
					st := n.a.Stats()
					drops += st.SlowSocketDrops + st.QueueFull
					resubscribes += st.Resubscribes
					if i > 0 && st.Received < uint64(b.N) {
						short++
					}
				}
				b.ReportMetric(float64(drops), "drops")
				b.ReportMetric(float64(resubscribes), "resubscribes")
				b.ReportMetric(float64(short), "nodes-short")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(sockets)/1024, "heap-KiB/socket")
			})
		}
	}
}

// clientsEnv, set to "count url...", makes the test binary the clients
// process of BenchmarkScaling (see TestMain).
const clientsEnv = "REDISADAPTER_BENCH_CLIENTS"

// startClients runs count clients spread over urls in a child process,
// waits until all are connected, and returns the count of events they
// have received, kept current until the benchmark ends.
func startClients(b *testing.B, urls []string, count int) *atomic.Int64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), clientsEnv+"="+strconv.Itoa(count)+" "+strings.Join(urls, " "))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
				continue
			}
			n, _ := strconv.ParseInt(sc.Text(), 10, 64)
			delivered.Store(n)
		}
	}()
	// Closing its stdin ends the child; it is killed if it does not exit.
	b.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	})
	select {
	case <-ready:
	case <-done:
		b.Fatal("the clients process ended before its clients connected")
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d clients not connected within 5 minutes", count)
	}
	return &delivered
}

// clientsProcess is the child of startClients: it connects the clients,
// says "ready", then prints how many events they have received whenever it
// changes, until its stdin closes.
func clientsProcess(spec string) int {
	f := strings.Fields(spec)
	count, err := strconv.Atoi(f[0])
	if err != nil || len(f) < 2 {
		fmt.Fprintln(os.Stderr, "bad", clientsEnv, spec)
		return 2
	}
	urls := f[1:]
	clients := make([]*siotest.Client, count)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 16 { // dial in parallel: one at a time takes minutes
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < count; i = int(next.Add(1)) - 1 {
				cl, err := siotest.Dial(urls[i%len(urls)])
				if err != nil {
					failed.Store(err)
					return
				}
				clients[i] = cl
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				cl.Close()
			}
		}
	}()
	if err, _ := failed.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "clients:", err)
		return 1
	}
	var delivered atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for _, cl := range clients {
		readers.Add(1)
		go func() {
			defer readers.Done()
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
	defer func() { close(stop); readers.Wait() }()
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	fmt.Println("ready")
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for last := int64(-1); ; {
		select {
		case <-tick.C:
			if n := delivered.Load(); n != last {
				last = n
				fmt.Println(n)
			}
		case <-eof:
			return 0
		}
	}
}

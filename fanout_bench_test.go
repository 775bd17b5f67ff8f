package redisadapter_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/siotest"
)

// BenchmarkFanout: node A broadcasts b.N events to a room; fanoutClients
// websocket clients of node B (Go clients speaking socket.io 2.x, so the
// clients are not the bottleneck) receive them. Side by side: this
// adapter, go-socket.io v1.7.0's built-in Redis adapter, and Node's
// socket.io 4 with @socket.io/redis-adapter 8. It reports deliveries per
// second, the share lost, the machine's CPU time per 1,000 deliveries
// (servers, clients and Redis together: they share its two cores), and the
// benchmark process's CPU time per 1,000 deliveries and write syscalls
// per delivery (servers, their Redis clients and the test clients; not
// Redis, nor Node.js servers): the machine's figure counts its neighbours
// too, the process's does not.
//
//	go test -run '^$' -bench Fanout -benchtime 20000x .
const fanoutClients = 10

func BenchmarkFanout(b *testing.B) {
	for _, size := range []int{100, 1024} {
		payload := strings.Repeat("x", size)
		b.Run("adapter/"+sizeName(size), func(b *testing.B) {
			srv := redistest.Start(b)
			c := redisadapter.Standalone{Addr: srv.Addr()}
			a, recv := startNode(b, c, nil), startNode(b, c, nil)
			fanout(b, recv.url, func(n int) {
				parallel(b, n, publishers, func() error { return a.a.To("room").Emit(context.Background(), "m", 0, payload) })
			})
		})
		b.Run("gosocketio-builtin/"+sizeName(size), func(b *testing.B) {
			srv := redistest.Start(b)
			a, _ := startBuiltin(b, srv.Addr())
			_, recvURL := startBuiltin(b, srv.Addr())
			// One goroutine: its one redigo connection breaks under
			// concurrent broadcasts.
			fanout(b, recvURL, func(n int) {
				for range n {
					a.BroadcastToRoom("/", "room", "m", 0, payload)
				}
			})
		})
		b.Run("node-redis-adapter/"+sizeName(size), func(b *testing.B) {
			srv := redistest.Start(b)
			sender, _, _ := startNodeServer(b, "REDIS_URL="+srv.URL())
			_, recvURL, _ := startNodeServer(b, "REDIS_URL="+srv.URL())
			fanout(b, recvURL, func(n int) {
				sender.Call(time.Minute, map[string]any{"op": "burst", "room": "room", "n": n, "size": size})
			})
		})
	}
}

// fanout connects the clients to url, runs send(b.N), and waits until the
// deliveries stop.
func fanout(b *testing.B, url string, send func(n int)) {
	var delivered atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range fanoutClients {
		countEvents(&wg, dialRooms(b, url, "room"), &delivered, stop)
	}
	defer func() { close(stop); wg.Wait() }()
	cpu0, proc0, writes0 := machineCPU(b), processCPU(b), processWrites(b)
	b.ResetTimer()
	send(b.N)
	reportDeliveries(b, &delivered, int64(b.N*fanoutClients), time.Second)
	reportMachineCPU(b, cpu0, delivered.Load())
	b.ReportMetric(float64(processCPU(b)-proc0)/float64(delivered.Load())*1000/float64(time.Millisecond), "proc-cpu-ms/1k")
	b.ReportMetric(float64(processWrites(b)-writes0)/float64(delivered.Load()), "writes/delivery")
}

// processWrites is how many write syscalls (write, writev, sendmsg...) the
// process has made: syscw of /proc/self/io.
func processWrites(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skip("no /proc/self/io")
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	b.Skip("no syscw in /proc/self/io")
	return 0
}

// reportDeliveries waits until want deliveries arrived, or none arrived for
// idle, then stops the timer and reports deliveries per second (the idle
// wait not counted) and the share lost.
func reportDeliveries(b *testing.B, delivered *atomic.Int64, want int64, idle time.Duration) {
	for last, since := int64(-1), time.Now(); delivered.Load() < want && time.Since(since) < idle; time.Sleep(5 * time.Millisecond) {
		if n := delivered.Load(); n != last {
			last, since = n, time.Now()
		}
	}
	b.StopTimer()
	got := delivered.Load()
	elapsed := b.Elapsed()
	if got < want {
		elapsed -= idle
	}
	b.ReportMetric(float64(got)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(100*float64(want-got)/float64(want), "%lost")
}

// reportMachineCPU reports the machine's CPU time since cpu0 (a
// machineCPU reading) per 1,000 deliveries: servers, clients and Redis
// together, what a rate costs on shared cores. It includes the idle wait
// of reportDeliveries when deliveries fall short, at next to no CPU.
func reportMachineCPU(b *testing.B, cpu0 time.Duration, deliveries int64) {
	b.ReportMetric(float64(machineCPU(b)-cpu0)/float64(max(deliveries, 1))*1000/float64(time.Millisecond), "cpu-ms/1k")
}

// machineCPU is the CPU time all processes of the machine have used.
func machineCPU(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Skip("no /proc/stat")
	}
	// user nice system idle iowait irq softirq steal guest guest_nice: the
	// busy ones are ours; steal is the hypervisor running someone else, and
	// guest time is already counted in user.
	fields := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:]
	var busy int64
	for _, i := range []int{0, 1, 2, 5, 6} {
		v, _ := strconv.ParseInt(fields[i], 10, 64)
		busy += v
	}
	return time.Duration(busy) * 10 * time.Millisecond // USER_HZ is 100
}

// startBuiltin starts a go-socket.io server using its own Redis adapter and
// returns it with its URL.
func startBuiltin(b *testing.B, addr string) (*socketio.Server, string) {
	srv := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	if ok, err := srv.Adapter(&socketio.RedisAdapterOptions{Addr: addr, Prefix: "builtin"}); !ok || err != nil {
		b.Fatal(fmt.Errorf("built-in adapter: %v", err))
	}
	srv.OnConnect("/", func(socketio.Conn) error { return nil })
	srv.OnEvent("/", "join", func(s socketio.Conn, room string) string { s.Join(room); return "ok" })
	go srv.Serve()
	hs := httptest.NewServer(srv)
	b.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); srv.Close() })
	return srv, hs.URL
}

// countEvents counts the "m" events cl receives into delivered, on a
// goroutine of wg's, until stop is closed.
func countEvents(wg *sync.WaitGroup, cl *siotest.Client, delivered *atomic.Int64, stop <-chan struct{}) {
	wg.Go(func() {
		for {
			select {
			case e := <-cl.Events:
				if e.Name == "m" {
					delivered.Add(1)
				}
			case <-stop:
				return
			}
		}
	})
}

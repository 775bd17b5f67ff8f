package redisadapter_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/nodetest"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkExamplePath is the example's path as a user runs it: two
// examples/blogstack server processes (built with go build) on one Redis;
// one socket.io-client 2.5.0 client (Node.js, internal/nodetest/client.js)
// on node A sends comments {post, text}, at most examplePathWindow of them
// unacknowledged at a time; one on node B, joined to the post, receives
// them. The nodes run with -event-rate 0: by default the example lets one
// connection send 50 events per second, and this client floods. Side by
// side: two Node.js socket.io 4 servers with @socket.io/redis-adapter 8
// running the same handler (internal/nodetest/server.js: to the post's
// room, acked "ok"). It reports comments delivered per second on B, the
// share lost, acks other than "ok", the CPU time (user and system) of the
// two server processes per 1,000 comments delivered (and of each: the
// sender's node, the receiver's), and the machine's (servers, clients and
// Redis together).
//
//	go test -run '^$' -bench ExamplePath -benchtime 20000x .
func BenchmarkExamplePath(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "blogstack")
	if out, err := exec.Command("go", "build", "-o", bin, "./examples/blogstack").CombinedOutput(); err != nil {
		b.Fatalf("go build ./examples/blogstack: %v\n%s", err, out)
	}
	b.Run("blogstack", func(b *testing.B) {
		srv := redistest.Start(b)
		a, r := startBlogstack(b, bin, srv.URL(), "a"), startBlogstack(b, bin, srv.URL(), "b")
		examplePath(b, a, r, "1") // the example joins post "1" to room post:1
	})
	b.Run("node-redis-adapter", func(b *testing.B) {
		srv := redistest.Start(b)
		var nodes [2]serverProcess
		for i := range nodes {
			p, url, _ := startNodeServer(b, "REDIS_URL="+srv.URL())
			nodes[i] = serverProcess{url: url, pid: p.PID()}
		}
		examplePath(b, nodes[0], nodes[1], "post:1") // server.js joins the room it is given
	})
}

// examplePathWindow is how many comments the sending client has
// unacknowledged at most: enough to keep both nodes busy (go-socket.io
// runs one connection's handlers one after another), few enough that no
// queue grows without bound.
const examplePathWindow = 64

// serverProcess is one server process of a benchmark: its URL and process id.
type serverProcess struct {
	url string
	pid int
}

// startBlogstack starts the example's binary as node name on redisURL,
// without the per-connection event rate limit, and waits for its health
// check. Its log is shown if the benchmark fails.
func startBlogstack(b *testing.B, bin, redisURL, name string) serverProcess {
	b.Helper()
	port := redistest.FreePort(b)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-node", name, "-event-rate", "0")
	cmd.Env = append(os.Environ(), "REDIS_URL="+redisURL)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("node %s:\n%s", name, log.String())
		}
	})
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	await.True(b, 15*time.Second, 20*time.Millisecond, "node "+name+" healthy", func() bool {
		resp, err := http.Get(url + "/health-check")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return serverProcess{url: url, pid: cmd.Process.Pid}
}

// examplePath sends b.N comments from a client of send and counts those a
// client of recv, joined to the post with join's argument, receives.
func examplePath(b *testing.B, send, recv serverProcess, join string) {
	sender, reader := nodetest.Dial(b, send.url, ""), nodetest.Dial(b, recv.url, "")
	reader.Call(b, "join", join)
	// The path must be live before the clock starts: a comment goes
	// through first.
	await.True(b, 15*time.Second, time.Millisecond, "a comment from one node to the other", func() bool {
		got := reader.Count(b, "comment", "warm-up", 1, 200*time.Millisecond, 0)
		sender.Call(b, "comment", map[string]any{"post": 1, "text": "warm-up"})
		return got(wait) == 1
	})
	const idle = time.Second
	// The count ends at the last comment, or idle after the latest; the
	// first may take longer on a loaded machine.
	delivered := reader.Count(b, "comment", "comment ", b.N, wait, idle)
	cpu0, send0, recv0 := machineCPU(b), procCPU(b, send.pid), procCPU(b, recv.pid)
	b.ResetTimer()
	acked := sender.Flood(b, "comment", b.N, examplePathWindow, 1, "comment ")
	got := delivered(time.Duration(b.N)*time.Millisecond + time.Minute)
	b.StopTimer()
	cpu, sendCPU, recvCPU := machineCPU(b)-cpu0, procCPU(b, send.pid)-send0, procCPU(b, recv.pid)-recv0
	f := acked(time.Minute)
	if got == 0 {
		b.Fatalf("no comment delivered; acks: %+v", f)
	}
	elapsed := b.Elapsed()
	if got < b.N {
		elapsed -= idle
	}
	perK := func(d time.Duration) float64 { return float64(d) / float64(got) * 1000 / float64(time.Millisecond) }
	b.ReportMetric(float64(got)/elapsed.Seconds(), "comments/s")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "%lost")
	b.ReportMetric(float64(f.Errors), "ack-errors")
	b.ReportMetric(perK(sendCPU+recvCPU), "servers-cpu-ms/1k")
	b.ReportMetric(perK(sendCPU), "sender-cpu-ms/1k")
	b.ReportMetric(perK(recvCPU), "receiver-cpu-ms/1k")
	b.ReportMetric(perK(cpu), "cpu-ms/1k")
}

// procCPU is the CPU time (user and system, every thread's) process pid
// has used.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skip("no /proc/<pid>/stat")
	}
	// The fields after the command's closing parenthesis start with the
	// third, state; utime and stime are the 14th and 15th.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
}

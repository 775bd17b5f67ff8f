package redisadapter_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	socketio "github.com/googollee/go-socket.io"

	"github.com/blogstack/redisadapter"
	"github.com/blogstack/redisadapter/internal/redistest"
)

// BenchmarkSameApp is the example's own path, the shape a user runs: one
// client sends comments ({post, text}) to node A as fast as it can; node
// A's handler broadcasts each to the post's room, as examples/blogstack
// does, and acks it; one client on node B, in that room, receives. go-
// socket.io runs one connection's handlers one after another, so each
// comment waits for the one before. Side by side: this adapter, go-
// socket.io's built-in Redis adapter, and Node's socket.io 4 with
// @socket.io/redis-adapter 8 running the same handler. It reports comments
// delivered per second on B, the share lost and the machine's CPU time per
// 1,000 comments delivered.
//
//	go test -run '^$' -bench SameApp -benchtime 20000x .
func BenchmarkSameApp(b *testing.B) {
	b.Run("adapter", func(b *testing.B) {
		srv := redistest.Start(b)
		c := redisadapter.Standalone{Addr: srv.Addr()}
		var send, recv *node
		for i := range 2 {
			n := startNodeWith(b, c, nil, func(srv *socketio.Server, a *redisadapter.Adapter) {
				srv.OnEvent("/", "comment", func(s socketio.Conn, m map[string]any) string {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					if err := a.To(fmt.Sprint("post:", m["post"])).Emit(ctx, "comment", map[string]any{"post": m["post"], "text": m["text"], "node": "a"}); err != nil {
						return "error: " + err.Error()
					}
					return "ok"
				})
			})
			if i == 0 {
				send = n
			} else {
				recv = n
			}
		}
		sameApp(b, send.url, recv.url)
	})
	b.Run("gosocketio-builtin", func(b *testing.B) {
		srv := redistest.Start(b)
		var urls []string
		for range 2 {
			s, url := startBuiltin(b, srv.Addr())
			s.OnEvent("/", "comment", func(_ socketio.Conn, m map[string]any) string {
				s.BroadcastToRoom("/", fmt.Sprint("post:", m["post"]), "comment", map[string]any{"post": m["post"], "text": m["text"], "node": "a"})
				return "ok"
			})
			urls = append(urls, url)
		}
		sameApp(b, urls[0], urls[1])
	})
	b.Run("node-redis-adapter", func(b *testing.B) {
		srv := redistest.Start(b)
		_, sendURL, _ := startNodeServer(b, "REDIS_URL="+srv.URL())
		_, recvURL, _ := startNodeServer(b, "REDIS_URL="+srv.URL())
		sameApp(b, sendURL, recvURL)
	})
}

// sameApp sends b.N comments from a client of sendURL and counts those a
// client of recvURL receives.
func sameApp(b *testing.B, sendURL, recvURL string) {
	sender, reader := dialRooms(b, sendURL), dialRooms(b, recvURL, "post:1")
	// The path must be live before the clock starts (go-socket.io's
	// built-in adapter subscribes in the background after it returns): a
	// comment goes through first.
	deadline := time.Now().Add(wait)
	for {
		if _, err := sender.Call(wait, "comment", map[string]any{"post": 1, "text": "first"}); err != nil {
			b.Fatal(err)
		}
		if _, err := reader.Next("comment", 100*time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no comment went from one node to the other")
		}
	}
	var delivered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case e := <-reader.Events:
				// The warm-up's comments do not count.
				if e.Name == "comment" && len(e.Args) > 0 && bytes.Contains(e.Args[0], []byte(`"text":"comment `)) {
					delivered.Add(1)
				}
			case <-stop:
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	cpu0 := machineCPU(b)
	b.ResetTimer()
	for i := range b.N {
		if err := sender.Emit("comment", map[string]any{"post": 1, "text": fmt.Sprint("comment ", i)}); err != nil {
			b.Fatal(err)
		}
	}
	reportDeliveries(b, &delivered, int64(b.N), time.Second)
	reportMachineCPU(b, cpu0, delivered.Load())
}

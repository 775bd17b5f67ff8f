// Command blogstack is the BlogStack live-comments server: readers of a blog
// post see new comments and the number of readers live, whichever node they
// are connected to. Run several behind a load balancer on one Redis.
//
//	go run ./examples/blogstack                      # one node, embedded Redis
//	REDIS_URL=redis://127.0.0.1:6379 go run ./examples/blogstack -addr :3001 -node a
//	REDIS_URL=redis://127.0.0.1:6379 REDIS_STREAMS=true go run ./examples/blogstack   # streams mode
//
// Socket.IO (namespace "/"):
//
//	join <post id>             joins room post:<id>; ack: readers of the post, all nodes
//	leave <post id>            leaves it
//	comment {post, text}       "comment" {post, text, node} to the post's room; ack: "ok" or an error
//	readers <post id>          ack: readers of the post, all nodes
//
// The server also pushes "readers:update" {post, count} to a post's room
// when its readers change.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"

	"github.com/blogstack/redisadapter"
)

const maxCommentLen = 2000

//go:embed index.html
var indexHTML string

func main() {
	host, _ := os.Hostname()
	addr := flag.String("addr", ":3000", "listen address")
	node := flag.String("node", host, "name of this node, shown with each comment")
	connLimit := flag.Int("conn-limit", 60, "new connections per client IP per minute (0: no limit)")
	origins := flag.String("origins", "", `allowed Origin values, comma-separated ("*": any; empty: same origin only)`)
	proxies := flag.String("trusted-proxies", "", "IPs or CIDRs of the proxies whose X-Forwarded-For is believed, comma-separated")
	assets := flag.String("assets", defaultAssets(), "directory holding node_modules/socket.io-client (npm ci there)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", *node)
	if err := run(*addr, *node, *connLimit, *origins, *proxies, *assets, log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// defaultAssets is this example's directory when run from the repository
// root (go run ./examples/blogstack) or from the directory itself.
func defaultAssets() string {
	if _, err := os.Stat("examples/blogstack/index.html"); err == nil {
		return "examples/blogstack"
	}
	return "."
}

func run(addr, node string, connLimit int, origins, proxies, assets string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	connector, err := connect(log)
	if err != nil {
		return err
	}
	guard, err := newGuard(connLimit, origins, proxies)
	if err != nil {
		return err
	}

	server := socketio.NewServer(&engineio.Options{SessionIDGenerator: redisadapter.SessionIDGenerator{}})
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	a, err := redisadapter.New(startCtx, server, connector, &redisadapter.Options{Logger: log})
	cancel()
	if err != nil {
		return err
	}
	app := &blog{a: a, node: node, log: log, posts: make(map[string]map[string]bool)}
	app.register(server)
	go server.Serve()

	mux := http.NewServeMux()
	mux.Handle("/socket.io/", guard.wrap(server))
	mux.HandleFunc("GET /health-check", app.health)
	mux.Handle("GET /metrics", metricsHandler(a))
	mux.HandleFunc("GET /socket.io-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(assets, "node_modules/socket.io-client/dist/socket.io.js"))
	})
	page := template.Must(template.New("index").Parse(indexHTML))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]string{"Node": node})
	})
	httpSrv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- httpSrv.ListenAndServe() }()
	log.Info("listening", "addr", addr)

	select {
	case err := <-errc:
		_ = a.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Stop accepting first, then leave the fleet, then drop the sockets.
	err = httpSrv.Shutdown(shutCtx)
	err = errors.Join(err, a.Close(shutCtx), server.Close())
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// connect returns the connector REDIS_URL and friends describe, or, without
// REDIS_URL, one to an embedded in-process Redis (miniredis) for a one-node
// demo.
func connect(log *slog.Logger) (redisadapter.Connector, error) {
	if os.Getenv("REDIS_URL") != "" {
		return redisadapter.FromEnv()
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	log.Info("no REDIS_URL: started an embedded Redis (miniredis); this node cannot share it with others", "addr", m.Addr())
	return redisadapter.Standalone{URL: "redis://" + m.Addr(), AlwaysRESP2: true}, nil
}

// blog holds the Socket.IO handlers.
type blog struct {
	a    *redisadapter.Adapter
	node string
	log  *slog.Logger

	mu    sync.Mutex
	posts map[string]map[string]bool // socket id -> posts it reads, to update counts on disconnect
}

func (b *blog) register(server *socketio.Server) {
	server.OnEvent("/", "join", b.join)
	server.OnEvent("/", "leave", b.leave)
	server.OnEvent("/", "comment", b.comment)
	server.OnEvent("/", "readers", b.readers)
	b.a.OnDisconnect("/", b.disconnect)
}

// postID accepts a post id as a string or a number.
func postID(v any) (string, error) {
	var id string
	switch v := v.(type) {
	case string:
		id = strings.TrimSpace(v)
	case float64:
		id = fmt.Sprint(v)
	}
	if id == "" || len(id) > 64 {
		return "", errors.New("error: post id must be a non-empty string of at most 64 characters")
	}
	return id, nil
}

func (b *blog) join(s socketio.Conn, v any) any {
	id, err := postID(v)
	if err != nil {
		return err.Error()
	}
	s.Join("post:" + id)
	b.mu.Lock()
	if b.posts[s.ID()] == nil {
		b.posts[s.ID()] = make(map[string]bool)
	}
	b.posts[s.ID()][id] = true
	b.mu.Unlock()
	return b.pushReaders(id)
}

func (b *blog) leave(s socketio.Conn, v any) any {
	id, err := postID(v)
	if err != nil {
		return err.Error()
	}
	s.Leave("post:" + id)
	b.mu.Lock()
	delete(b.posts[s.ID()], id)
	b.mu.Unlock()
	b.pushReaders(id)
	return "ok"
}

func (b *blog) disconnect(s socketio.Conn, _ string) {
	b.mu.Lock()
	posts := b.posts[s.ID()]
	delete(b.posts, s.ID())
	b.mu.Unlock()
	for id := range posts {
		b.pushReaders(id)
	}
}

func (b *blog) readers(s socketio.Conn, v any) any {
	id, err := postID(v)
	if err != nil {
		return err.Error()
	}
	return b.count(id)
}

// count is the number of readers of a post on every node; when a node does
// not answer in time, the others' count.
func (b *blog) count(id string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	n, err := b.a.To("post:" + id).CountSockets(ctx)
	if err != nil {
		b.log.Warn("reader count incomplete", "post", id, "err", err)
	}
	return n
}

// pushReaders tells the post's readers how many they are, and returns it.
func (b *blog) pushReaders(id string) int {
	n := b.count(id)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.a.To("post:"+id).Emit(ctx, "readers:update", map[string]any{"post": id, "count": n}); err != nil {
		b.log.Warn("readers update not sent to other nodes", "post", id, "err", err)
	}
	return n
}

type comment struct {
	Post string `json:"post"`
	Text string `json:"text"`
	Node string `json:"node"`
}

func (b *blog) comment(s socketio.Conn, v any) string {
	m, _ := v.(map[string]any)
	if m == nil {
		return "error: a comment is an object {post, text}"
	}
	id, err := postID(m["post"])
	if err != nil {
		return err.Error()
	}
	text, _ := m["text"].(string)
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return "error: empty comment"
	case len([]rune(text)) > maxCommentLen:
		return fmt.Sprintf("error: comment longer than %d characters", maxCommentLen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.a.To("post:"+id).Emit(ctx, "comment", comment{Post: id, Text: text, Node: b.node}); err != nil {
		b.log.Error("comment not sent to other nodes", "post", id, "err", err)
		return "error: comment not delivered to every node"
	}
	return "ok"
}

// health answers 200 when Redis answers the adapter's ping, on the
// adapter's own connection.
func (b *blog) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	status, body := http.StatusOK, map[string]string{"status": "ok"}
	if err := b.a.Ping(ctx); err != nil {
		status, body = http.StatusServiceUnavailable, map[string]string{"status": "error", "message": err.Error()}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

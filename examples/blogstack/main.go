// Command blogstack is the BlogStack live-comments server: readers of a blog
// post see new comments and the number of readers live, whichever node they
// are connected to. Run several behind a load balancer on one Redis.
//
//	go run ./examples/blogstack                      # one node, embedded Redis
//	REDIS_URL=redis://127.0.0.1:6379 go run ./examples/blogstack -addr :3001 -node a
//	go run ./examples/blogstack -addr :8443 -tls-cert fullchain.pem -tls-key privkey.pem
//	REDIS_URL=redis://127.0.0.1:6379 REDIS_STREAMS=true go run ./examples/blogstack   # streams mode
//
// Socket.IO (namespace "/"):
//
//	join <post id>             joins room post:<id>; ack: readers of the post, all nodes
//	leave <post id>            leaves it
//	comment {post, text}       "comment" {post, text, node} to the post's room; ack: "ok" or an error
//	readers <post id>          ack: readers of the post, all nodes
//	receipts <post id>         opts in to delivery receipts on the post; ack: "ok" or an error
//	fleet <post id>            ack: {post, node, readers}: the node serving this socket and
//	                           the post's readers on each node, {"<node>": count, ...}
//
// The server also pushes "readers:update" {post, count} and "fleet:update"
// {post, readers} to a post's room when its readers change.
//
// Delivery receipts: when both the author of a comment and some readers
// sent "receipts" (the page does), those readers get the comment with an
// acknowledgement request and answer it; the author then gets
// "comment:receipt" {post, text, delivered, complete}: how many of them,
// on every node, confirmed they received it (the author's own tab
// included), and whether all of them did within 3 s; when the comment could
// not be sent for another reason than the 3 s, "error" says why. Every
// other reader gets comments as before, without a request to answer.
// Receipted comments of one author reach receipt readers in the order sent,
// unless more than 32 wait: the excess goes out without a receipt.
//
// Each socket's data (FetchSockets, Node's socket.data) is {"node": name}:
// the per-node counts come from it. A Node.js server in the fleet that sets
// socket.data.node the same way is counted under its name; sockets without
// it under "other".
//
// Hostile clients are bounded: a message over -max-message-size (1 MB)
// disconnects its client before it is read (redisadapter.ClientLimits);
// past -max-posts joined posts or -event-rate events per second, a
// connection's events get an error ack ("error: ...") instead.
package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
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
	var c config
	flag.StringVar(&c.addr, "addr", ":3000", "listen address")
	flag.StringVar(&c.node, "node", host, "name of this node, shown with each comment")
	flag.IntVar(&c.connLimit, "conn-limit", 60, "new connections per client IP per minute (0: no limit)")
	flag.StringVar(&c.origins, "origins", "", `allowed Origin values, comma-separated ("*": any; empty: same origin only)`)
	flag.StringVar(&c.proxies, "trusted-proxies", "", "IPs or CIDRs of the proxies whose X-Forwarded-For is believed, comma-separated")
	flag.StringVar(&c.assets, "assets", defaultAssets(), "directory holding node_modules/socket.io-client (npm ci there)")
	flag.Int64Var(&c.maxMessage, "max-message-size", 1e6, "largest message (and long-polling request body) a client may send, in bytes; a client sending more is disconnected")
	flag.IntVar(&c.maxPosts, "max-posts", 100, "posts one connection may have joined at once (0: no limit)")
	flag.Float64Var(&c.eventRate, "event-rate", 50, "events per second one connection may send, sustained, with bursts of twice that (0: no limit)")
	flag.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (then intermediates) to serve HTTPS and wss:// itself, without a terminating balancer; needs -tls-key")
	flag.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", c.node)
	if err := run(c, log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr, node, origins, proxies, assets string
	tlsCert, tlsKey                      string
	connLimit, maxPosts                  int
	maxMessage                           int64
	eventRate                            float64
}

// defaultAssets is this example's directory when run from the repository
// root (go run ./examples/blogstack) or from the directory itself.
func defaultAssets() string {
	if _, err := os.Stat("examples/blogstack/index.html"); err == nil {
		return "examples/blogstack"
	}
	return "."
}

func run(c config, log *slog.Logger) error {
	addr, node, assets := c.addr, c.node, c.assets
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	connector, err := connect(log)
	if err != nil {
		return err
	}
	guard, err := newGuard(c.connLimit, c.origins, c.proxies)
	if err != nil {
		return err
	}

	limits := newReaderLimits(c.maxPosts, c.eventRate)
	server := socketio.NewServer(&engineio.Options{
		SessionIDGenerator: redisadapter.SessionIDGenerator{},
		// Oversized messages close their client before they are read.
		Transports: redisadapter.ClientLimits{
			MaxMessageSize: c.maxMessage,
			OnReject: func(remote net.Addr, err error) {
				limits.rejected.Add(1)
				log.Warn("client disconnected", "remote", remote.String(), "err", err)
			},
		}.Transports(),
	})
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	a, err := redisadapter.New(startCtx, server, connector, &redisadapter.Options{Logger: log})
	cancel()
	if err != nil {
		return err
	}
	app := &blog{a: a, node: node, log: log, ctx: ctx, limits: limits, posts: make(map[string]map[string]bool),
		receiptQ: make(map[string][]comment)}
	app.fleetRefresh = newCoalescer(app.pushFleet)
	app.register(server)
	go server.Serve()

	mux := http.NewServeMux()
	mux.Handle("/socket.io/", guard.wrap(server))
	mux.HandleFunc("GET /health-check", app.health)
	mux.Handle("GET /metrics", metricsHandler(a, limits))
	clientJS := filepath.Join(assets, "node_modules/socket.io-client/dist/socket.io.js")
	if _, err := os.Stat(clientJS); err != nil {
		// Without it the page would load and stay silent.
		log.Warn("the page's socket.io-client is missing: run ./examples/demo.sh, or `npm ci` in examples/blogstack (then -assets there)", "want", clientJS)
	}
	mux.HandleFunc("GET /socket.io-client.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, clientJS)
	})
	page := template.Must(template.New("index").Parse(indexHTML))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		_, err := os.Stat(clientJS) // at each request: installing it needs no restart
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, map[string]any{"Node": node, "ClientMissing": err != nil})
	})
	httpSrv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	errc := make(chan error, 1)
	if c.tlsCert != "" {
		go func() { errc <- httpSrv.ListenAndServeTLS(c.tlsCert, c.tlsKey) }()
		log.Info("listening", "addr", addr, "tls", true)
	} else {
		go func() { errc <- httpSrv.ListenAndServe() }()
		log.Info("listening", "addr", addr)
	}

	select {
	case err := <-errc:
		stop() // ends the receipts and fleet refreshes under way
		app.drain()
		_ = a.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Stop accepting first, then leave the fleet, then drop the sockets.
	err = httpSrv.Shutdown(shutCtx)
	app.drain() // they end with ctx
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
	// miniredis answers HELLO 3 but cannot mix pub/sub and commands on a
	// RESP3 connection: protocol=2 keeps the client on RESP2.
	return redisadapter.Standalone{URL: "redis://" + m.Addr() + "?protocol=2"}, nil
}

// blog holds the Socket.IO handlers.
type blog struct {
	a      *redisadapter.Adapter
	node   string
	log    *slog.Logger
	ctx    context.Context // ends at shutdown
	limits *readerLimits

	fleetRefresh *coalescer // pushes "fleet:update", by post

	// The receipt deliveries under way. Add only under mu while !closing:
	// hijacked websockets run handlers after httpSrv.Shutdown, and an Add
	// racing drain's Wait is a misuse.
	receiptsWG sync.WaitGroup

	mu       sync.Mutex
	closing  bool                       // set by drain: no new receipt goroutines
	posts    map[string]map[string]bool // socket id -> posts it reads, to update counts on disconnect
	receiptQ map[string][]comment       // author socket id -> receipted comments waiting; present while its goroutine runs
}

// drain stops new receipt and fleet goroutines and waits for those under
// way; they end with b.ctx.
func (b *blog) drain() {
	b.mu.Lock()
	b.closing = true
	b.mu.Unlock()
	b.fleetRefresh.close()
	b.receiptsWG.Wait()
}

// coalescer runs fn(key) off its caller's goroutine, at most once per key
// at a time: triggers during a run cost one more run after it, not one
// each, and that run starts after them.
type coalescer struct {
	fn func(key string)
	wg sync.WaitGroup // Add only under mu while !closing, as blog.receiptsWG

	mu      sync.Mutex
	closing bool
	runs    map[string]bool // key -> a run is under way; true: run again after it
}

func newCoalescer(fn func(string)) *coalescer {
	return &coalescer{fn: fn, runs: make(map[string]bool)}
}

func (c *coalescer) trigger(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if _, running := c.runs[key]; running {
		c.runs[key] = true // the run under way may have read the state before this change
		return
	}
	c.runs[key] = false
	c.wg.Add(1)
	go c.loop(key)
}

func (c *coalescer) loop(key string) {
	defer c.wg.Done()
	for {
		c.fn(key)
		c.mu.Lock()
		if !c.runs[key] || c.closing {
			delete(c.runs, key)
			c.mu.Unlock()
			return
		}
		c.runs[key] = false
		c.mu.Unlock()
	}
}

// close refuses new runs and waits for those under way.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wg.Wait()
}

func (b *blog) register(server *socketio.Server) {
	server.OnEvent("/", "join", b.join)
	server.OnEvent("/", "leave", b.leave)
	server.OnEvent("/", "comment", b.comment)
	server.OnEvent("/", "readers", b.readers)
	server.OnEvent("/", "receipts", b.receipts)
	server.OnEvent("/", "fleet", b.fleet)
	b.a.OnConnect("/", b.connect)
	b.a.OnDisconnect("/", b.disconnect)
}

func (b *blog) connect(s socketio.Conn) error {
	b.limits.connected(s.ID())
	// Other nodes see which node holds this socket through FetchSockets.
	return b.a.SetData("/", s, socketData{Node: b.node})
}

// socketData is every socket's data, as FetchSockets reports it.
type socketData struct {
	Node string `json:"node"`
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

// admit takes one event of s about post v past the connection's rate
// limit, and returns the post's id, or else the error ack to send.
func (b *blog) admit(s socketio.Conn, v any) (id, errAck string) {
	if e := b.limits.event(s.ID()); e != "" {
		return "", e
	}
	id, err := postID(v)
	if err != nil {
		return "", err.Error()
	}
	return id, ""
}

func (b *blog) join(s socketio.Conn, v any) any {
	id, e := b.admit(s, v)
	if e != "" {
		return e
	}
	b.mu.Lock()
	posts := b.posts[s.ID()]
	if max := b.limits.maxPosts; max > 0 && !posts[id] && len(posts) >= max {
		b.mu.Unlock()
		b.limits.limited.Add(1)
		return fmt.Sprintf("error: a connection reads at most %d posts at once; leave one first", max)
	}
	if posts == nil {
		posts = make(map[string]bool)
		b.posts[s.ID()] = posts
	}
	posts[id] = true
	b.mu.Unlock()
	s.Join("post:" + id)
	return b.pushReaders(id)
}

func (b *blog) leave(s socketio.Conn, v any) any {
	id, e := b.admit(s, v)
	if e != "" {
		return e
	}
	s.Leave("post:" + id)
	s.Leave(receiptsRoom(id))
	b.mu.Lock()
	delete(b.posts[s.ID()], id)
	b.mu.Unlock()
	b.pushReaders(id)
	return "ok"
}

func (b *blog) disconnect(s socketio.Conn, _ string) {
	b.limits.disconnected(s.ID())
	b.mu.Lock()
	posts := b.posts[s.ID()]
	delete(b.posts, s.ID())
	b.mu.Unlock()
	for id := range posts {
		b.pushReaders(id)
	}
}

func (b *blog) readers(s socketio.Conn, v any) any {
	id, e := b.admit(s, v)
	if e != "" {
		return e
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

// fleetOf returns the post's readers per node, cluster-wide, from FetchSockets;
// when a node does not answer in time, the others'.
func (b *blog) fleetOf(ctx context.Context, id string) map[string]int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	sockets, err := b.a.To("post:" + id).FetchSockets(ctx)
	if err != nil {
		b.log.Warn("reader list incomplete", "post", id, "err", err)
	}
	perNode := make(map[string]int)
	for _, s := range sockets {
		var d socketData
		_ = json.Unmarshal(s.Data, &d) // anything else than {"node": ...} counts as "other"
		if d.Node == "" {
			d.Node = "other"
		}
		perNode[d.Node]++
	}
	return perNode
}

func (b *blog) fleet(s socketio.Conn, v any) any {
	id, e := b.admit(s, v)
	if e != "" {
		return e
	}
	perNode := b.fleetOf(context.Background(), id)
	return map[string]any{"post": id, "node": b.node, "readers": perNode}
}

// pushReaders tells the post's readers how many they are, and returns it;
// their count per node follows, from b.fleetRefresh. The count stays on
// CountSockets: FetchSockets lists every socket (O(readers) over Redis) and
// loses a node whose list exceeds MaxMessageSize.
func (b *blog) pushReaders(id string) int {
	n := b.count(id)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.a.To("post:"+id).Emit(ctx, "readers:update", map[string]any{"post": id, "count": n}); err != nil {
		b.log.Warn("readers update not sent to other nodes", "post", id, "err", err)
	}
	// Off the handler goroutine, coalesced per post: a FetchSockets per
	// change would cost O(readers) over Redis each.
	b.fleetRefresh.trigger(id)
	return n
}

// pushFleet tells the post's readers how many they are on each node.
func (b *blog) pushFleet(id string) {
	perNode := b.fleetOf(b.ctx, id)
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	if err := b.a.To("post:"+id).Emit(ctx, "fleet:update", map[string]any{"post": id, "readers": perNode}); err != nil {
		b.log.Warn("fleet update not sent to other nodes", "post", id, "err", err)
	}
}

type comment struct {
	Post string `json:"post"`
	Text string `json:"text"`
	Node string `json:"node"`
}

func (b *blog) comment(s socketio.Conn, v any) string {
	if e := b.limits.event(s.ID()); e != "" {
		return e
	}
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
	c := comment{Post: id, Text: text, Node: b.node}
	readers := b.a.To("post:" + id)
	// An author who asked for receipts: readers who did too get the comment
	// with an acknowledgement request, below; the others as before.
	wantsReceipt := slices.Contains(s.Rooms(), receiptsRoom(id))
	if wantsReceipt {
		readers = readers.Except(receiptsRoom(id))
	}
	if err := readers.Emit(ctx, "comment", c); err != nil {
		b.log.Error("comment not sent to other nodes", "post", id, "err", err)
		return "error: comment not delivered to every node"
	}
	// Not waited for here: go-socket.io reads the author's own
	// acknowledgement on the goroutine running this handler.
	if wantsReceipt && !b.queueReceipt(s.ID(), c) {
		// Too many waiting, or shutting down: sent plainly, no receipt.
		if err := b.a.To(receiptsRoom(id)).Emit(ctx, "comment", c); err != nil {
			b.log.Error("comment not sent to other nodes", "post", id, "err", err)
			return "error: comment not delivered to every node"
		}
	}
	return "ok"
}

// maxWaitingReceipts bounds an author's receipted comments waiting for
// their turn; past it they go out plainly, possibly ahead of waiting ones.
const maxWaitingReceipts = 32

// queueReceipt queues c for delivery with a receipt after the author's
// earlier ones, so receipt readers get them in order; false if it did not.
func (b *blog) queueReceipt(author string, c comment) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q, running := b.receiptQ[author]
	if b.closing || len(q) >= maxWaitingReceipts {
		return false
	}
	b.receiptQ[author] = append(q, c)
	if !running {
		b.receiptsWG.Add(1)
		go b.drainReceipts(author)
	}
	return true
}

// drainReceipts delivers the author's queued comments one at a time, and
// ends when none is left.
func (b *blog) drainReceipts(author string) {
	defer b.receiptsWG.Done()
	for {
		b.mu.Lock()
		q := b.receiptQ[author]
		if len(q) == 0 {
			delete(b.receiptQ, author)
			b.mu.Unlock()
			return
		}
		c := q[0]
		b.receiptQ[author] = q[1:]
		b.mu.Unlock()
		b.deliverWithReceipt(author, c)
	}
}

// receiptsRoom holds the readers of a post who asked for delivery receipts.
func receiptsRoom(post string) string { return "receipts:" + post }

func (b *blog) receipts(s socketio.Conn, v any) string {
	id, e := b.admit(s, v)
	if e != "" {
		return e
	}
	// Only for a post the connection reads: -max-posts bounds these rooms too.
	b.mu.Lock()
	reading := b.posts[s.ID()][id]
	b.mu.Unlock()
	if !reading {
		return "error: join the post first"
	}
	s.Join(receiptsRoom(id))
	return "ok"
}

// deliverWithReceipt sends c to the readers of its post who asked for
// receipts, on every node, and tells its author how many confirmed.
func (b *blog) deliverWithReceipt(author string, c comment) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	acks, err := b.a.To(receiptsRoom(c.Post)).Timeout(3*time.Second).EmitWithAck(ctx, "comment", c)
	receipt := map[string]any{"post": c.Post, "text": c.Text, "delivered": len(acks), "complete": err == nil}
	if err != nil && !errors.Is(err, redisadapter.ErrTimeout) {
		b.log.Warn("comment with receipts not sent", "post", c.Post, "err", err)
		receipt["error"] = err.Error() // the author learns why, not only "incomplete"
	}
	if err := b.a.To(author).Emit(ctx, "comment:receipt", receipt); err != nil {
		b.log.Warn("receipt not sent", "post", c.Post, "err", err)
	}
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

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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	socketio "github.com/googollee/go-socket.io"
	"github.com/googollee/go-socket.io/engineio"

	"github.com/blogstack/redisadapter"
)

const (
	startTimeout    = 10 * time.Second // to reach Redis at start
	shutdownTimeout = 5 * time.Second  // for all that shutdown waits for
)

func main() {
	host, _ := os.Hostname()
	var c config
	flag.StringVar(&c.addr, "addr", ":3000", "listen address")
	flag.StringVar(&c.node, "node", host, "name of this node, shown with each comment")
	flag.IntVar(&c.connLimit, "conn-limit", 60, "new connections per client IP per minute (0: no limit)")
	flag.StringVar(&c.origins, "origins", "", `allowed Origin values, comma-separated ("*": any; empty: same origin only)`)
	flag.StringVar(&c.proxies, "trusted-proxies", "", "IPs or CIDRs of the proxies whose X-Forwarded-For is believed, comma-separated")
	flag.StringVar(&c.assets, "assets", defaultAssets(), "directory holding node_modules/socket.io-client (npm ci there)")
	flag.IntVar(&c.maxMessage, "max-message-size", 1e6, "largest message (and long-polling request body) a client may send, in bytes; a client sending more is disconnected")
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
	maxMessage                           int
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

// run serves until SIGTERM or an interrupt, or until the HTTP server fails;
// either way it then shuts down within shutdownTimeout.
func run(c config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if c.maxMessage < 0 {
		return errors.New("-max-message-size must not be negative")
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
		Transports: limits.clientLimits(c.maxMessage, log).Transports(),
	})
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	a, err := redisadapter.New(startCtx, server, connector, &redisadapter.Options{Logger: log})
	cancel()
	if err != nil {
		return err
	}
	app := newBlog(ctx, a, c.node, limits, log)
	app.register(server)
	go server.Serve()

	mux := http.NewServeMux()
	mux.Handle("/socket.io/", guard.wrap(server))
	mux.HandleFunc("GET /health-check", healthHandler(a))
	mux.Handle("GET /metrics", metricsHandler(a, limits))
	addPage(mux, c.assets, c.node, log)
	httpSrv := &http.Server{Addr: c.addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	errc := make(chan error, 1)
	if c.tlsCert != "" {
		go func() { errc <- httpSrv.ListenAndServeTLS(c.tlsCert, c.tlsKey) }()
		log.Info("listening", "addr", c.addr, "tls", true)
	} else {
		go func() { errc <- httpSrv.ListenAndServe() }()
		log.Info("listening", "addr", c.addr)
	}

	var serveErr error
	select {
	case serveErr = <-errc:
		stop() // ends the receipts and fleet refreshes under way, as a signal does
	case <-ctx.Done():
		log.Info("shutting down")
	}
	return errors.Join(serveErr, shutdown(httpSrv, app, a, server))
}

// shutdown stops accepting first, then leaves the fleet, then drops the
// sockets, all within shutdownTimeout.
func shutdown(httpSrv *http.Server, app *blog, a *redisadapter.Adapter, server *socketio.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(httpSrv.Shutdown(ctx), app.drain(ctx), a.Close(ctx), server.Close())
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
	// RESP3 connection: Protocol 2 keeps the client on RESP2.
	return redisadapter.Standalone{Addr: m.Addr(), Protocol: 2}, nil
}

package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	socketio "github.com/googollee/go-socket.io"
)

// Adapter makes the go-socket.io servers of a fleet act as one through Redis.
// Create one per *socketio.Server with New, before the server's Serve; all
// its methods are safe for concurrent use.
type Adapter struct {
	*publisher
	server *socketio.Server
	log    *slog.Logger

	namespaces map[string]*namespace // fixed at New
	routes     map[string]route      // channel or pattern -> where its messages go; fixed at New

	// roomRoutes maps a room channel to its namespace, for protocols with
	// room channels: written by the room manager (rooms.go), read by the
	// Redis readers, which a sync.Map never makes wait.
	roomRoutes sync.Map
	rooms      *roomSubs // the room channels' manager; nil without room channels

	broadcasts chan inbound
	requests   chan inbound
	responses  chan inbound

	pendingMu sync.Mutex
	pending   map[string]*pendingRequest

	ackTurns connTurns // acked emits, one at a time per connection

	handlersMu sync.RWMutex
	handlers   map[string]ServerSideHandler // key: nsp + "\x00" + event

	subs               *subscriptionTracker // set by start
	stats              counters
	idWarnOnce         sync.Once          // default session ids
	connectWarnOnce    sync.Once          // the server's OnConnect replaced the adapter's
	disconnectWarnOnce sync.Once          // the server's OnDisconnect replaced the adapter's
	liveMu             sync.RWMutex       // orders spawn against closing
	closing            chan struct{}      // closed once, when the adapter closes
	stop               context.CancelFunc // ends the receive loops
	wg                 sync.WaitGroup     // every goroutine the adapter starts
}

// ServerSideHandler handles an event sent by ServerSideEmit on another node
// (Go or Node.js). args are the event's arguments as JSON. When the sender
// asked for an acknowledgement, the returned value is sent back as this
// node's answer; otherwise it is discarded. Handlers run one at a time on
// the adapter's request goroutine: a slow one delays this node's answers to
// other requests, not the broadcasts it delivers.
type ServerSideHandler func(args []json.RawMessage) any

// New attaches an adapter to server, connected to Redis through c, and
// returns once its subscriptions are active, so that a broadcast published
// by any node after New returns reaches this one. opts may be nil.
//
// New installs OnConnect and OnDisconnect handlers on every namespace in
// opts.Namespaces to track the sockets of this node: register yours with
// Adapter.OnConnect and Adapter.OnDisconnect, not with the server, which
// keeps one handler per hook. Call New before server.Serve (go-socket.io
// stores handlers without a lock) and create the server with
// SessionIDGenerator, or socket ids collide across nodes.
//
// New fails with ErrConfig for invalid options or connector, with
// ErrUnavailable (wrapping the cause) when Redis cannot be reached or the
// subscriptions are not confirmed before ctx ends, and with Redis's error
// when it refuses the credentials.
func New(ctx context.Context, server *socketio.Server, c Connector, opts *Options) (*Adapter, error) {
	if server == nil || c == nil {
		return nil, fmt.Errorf("%w: server and connector are required", ErrConfig)
	}
	c, o, client, err := open(c, opts)
	if err != nil {
		return nil, err
	}
	uid := randomID(6)
	log := o.Logger.With("adapter", "redisadapter", "uid", uid)
	proto := c.protocol(o.Key, uid)
	a := &Adapter{
		server:     server,
		log:        log,
		namespaces: make(map[string]*namespace),
		routes:     make(map[string]route),
		broadcasts: make(chan inbound, o.ReceiveQueue),
		requests:   make(chan inbound, o.ReceiveQueue),
		responses:  make(chan inbound, o.ReceiveQueue),
		pending:    make(map[string]*pendingRequest),
		handlers:   make(map[string]ServerSideHandler),
		closing:    make(chan struct{}),
	}
	var gate func() error
	if _, durable := proto.(streams); !durable {
		// A stream entry waits for every reader: a node whose
		// subscriptions are down reads it once it is back.
		gate = a.mayPublish
	}
	a.publisher = newPublisher(client, proto, o, uid, log, gate)
	for _, name := range o.Namespaces {
		ns := newNamespace(name, proto.namespace(name))
		a.namespaces[name] = ns
		server.OnConnect(name, func(conn socketio.Conn) error { return a.onConnect(ns, conn) })
		server.OnDisconnect(name, func(conn socketio.Conn, reason string) { a.onDisconnect(ns, conn, reason) })
	}
	if err := a.start(ctx); err != nil {
		a.shutdown()
		return nil, err
	}
	return a, nil
}

// UID is this node's id on the wire, unique per Adapter.
func (a *Adapter) UID() string { return a.uid }

// OnConnect registers f as the connect handler of namespace nsp (in place of
// server.OnConnect, which would replace the adapter's). It panics when nsp
// is not in Options.Namespaces, a programming error.
func (a *Adapter) OnConnect(nsp string, f func(socketio.Conn) error) {
	ns := a.mustNamespace(nsp)
	ns.mu.Lock()
	ns.onConnect = f
	ns.mu.Unlock()
}

// OnDisconnect registers f as the disconnect handler of namespace nsp (in
// place of server.OnDisconnect). It panics when nsp is not served.
func (a *Adapter) OnDisconnect(nsp string, f func(socketio.Conn, string)) {
	ns := a.mustNamespace(nsp)
	ns.mu.Lock()
	ns.onDisconnect = f
	ns.mu.Unlock()
}

// OnServerSideEmit registers the handler of event in namespace nsp for
// events sent with ServerSideEmit by other nodes. A second registration for
// the same event replaces the first. It panics when nsp is not served.
func (a *Adapter) OnServerSideEmit(nsp, event string, h ServerSideHandler) {
	a.mustNamespace(nsp)
	a.handlersMu.Lock()
	a.handlers[nsp+"\x00"+event] = h
	a.handlersMu.Unlock()
}

func (a *Adapter) serverSideHandler(nsp, event string) ServerSideHandler {
	a.handlersMu.RLock()
	defer a.handlersMu.RUnlock()
	return a.handlers[nsp+"\x00"+event]
}

func (a *Adapter) mustNamespace(nsp string) *namespace {
	ns, ok := a.namespaces[normalizeNamespace(nsp)]
	if !ok {
		panic(fmt.Sprintf("redisadapter: namespace %q is not in Options.Namespaces", nsp))
	}
	return ns
}

func (a *Adapter) namespace(nsp string) (*namespace, error) {
	ns, ok := a.namespaces[normalizeNamespace(nsp)]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNamespace, nsp)
	}
	return ns, nil
}

// normalizeNamespace maps go-socket.io's alias of the root namespace ("")
// to "/".
func normalizeNamespace(nsp string) string {
	if nsp == "" {
		return "/"
	}
	return nsp
}

// SetData sets the data FetchSockets reports for conn, a local socket of
// namespace nsp: Node's socket.data. data must encode as JSON; it is encoded
// now, so later changes to it are not seen. (go-socket.io's Context is not
// used: it is read and written without a lock.) For a conn that has
// disconnected it does nothing. SetData fails with ErrUnknownNamespace, or
// the JSON error.
func (a *Adapter) SetData(nsp string, conn socketio.Conn, data any) error {
	ns, err := a.namespace(nsp)
	if err != nil {
		return err
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("redisadapter: socket data: %w", err)
	}
	if s := a.socketFor(ns, conn); s != nil { // nil: conn has disconnected, its data is gone
		s.mu.Lock()
		s.data = b
		s.mu.Unlock()
	}
	return nil
}

// Ping reports whether this node takes part in the fleet, for health
// checks: its subscriptions are live, and the Redis node that takes each
// namespace's publishes answers on the adapter's own connections (it opens
// none). It fails with ErrUnavailable (wrapping the Redis error, if any)
// otherwise, and with ErrClosed after Close.
func (a *Adapter) Ping(ctx context.Context) error {
	if a.isClosed() {
		return ErrClosed
	}
	if err := a.checkSubscribed(); err != nil {
		return err
	}
	if n := a.roomShardsDown(); n > 0 {
		return fmt.Errorf("%w: room channels' connection down to %d cluster masters", ErrUnavailable, n)
	}
	for _, name := range a.opts.Namespaces {
		if err := a.client.Do(ctx, a.namespaces[name].proto.ping(a.client)).Error(); err != nil {
			return fmt.Errorf("%w: ping: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// roomShardsDown is how many cluster masters the room channels cannot be
// subscribed on now.
func (a *Adapter) roomShardsDown() int {
	if a.rooms == nil {
		return 0
	}
	return int(a.rooms.down.Load())
}

// mayPublish is checkSubscribed for what a node publishes to the fleet
// (the publisher's gate): the error also says it was not published
// (ErrPublish).
func (a *Adapter) mayPublish() error {
	if err := a.checkSubscribed(); err != nil {
		return fmt.Errorf("%w: not published: %w", ErrPublish, err)
	}
	return nil
}

// checkSubscribed fails with ErrUnavailable while a subscription is down,
// and for a moment after they are back (see settle).
func (a *Adapter) checkSubscribed() error {
	if !a.subs.ready() {
		return fmt.Errorf("%w: subscriptions are down", ErrUnavailable)
	}
	return nil
}

// Close stops accepting messages to publish (ErrClosed), publishes those
// already queued, unsubscribes, fails pending requests with ErrClosed,
// stops every goroutine the adapter started and closes its Redis client.
// Sockets stay connected to the server. Close waits for the queue and the
// adapter's goroutines until ctx ends (one may be stuck writing to a client
// that does not read) and then returns ctx's error. It returns an error
// wrapping ErrPublish when a queued message failed that no Flush reported.
// Calling it again returns nil at once.
func (a *Adapter) Close(ctx context.Context) error {
	if !a.markClosed() {
		return nil
	}
	a.failPending()
	select {
	case <-a.closeNow():
	case <-ctx.Done():
		go a.shutdown() // what is still queued fails once the client is closed
		return fmt.Errorf("redisadapter: close: queued messages not all sent: %w", ctx.Err())
	}
	unsent := a.takeUnreported()
	done := make(chan struct{})
	go func() {
		a.shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("redisadapter: close: %w", ctx.Err())
	}
	if unsent != nil {
		return fmt.Errorf("redisadapter: close: %w", unsent)
	}
	return nil
}

// shutdown stops the receive loops and workers, waits for them and closes
// the client (the publisher's queue is empty or abandoned by then: once
// the client is closed its sender fails what is left at once).
func (a *Adapter) shutdown() {
	a.markClosed()
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
	a.client.Close()
	<-a.publisher.closeNow()
}

// Flush waits until Redis has answered every message this node queued
// before the call (Emit returns once its message is queued) and returns
// the first failure among them that no caller has heard of yet, wrapping
// ErrPublish; ctx's error when it ends first; ErrClosed after Close. A
// failure is reported once: to the first Flush that sees it, or to Close.
// It is safe to call from many goroutines.
func (a *Adapter) Flush(ctx context.Context) error { return a.flush(ctx) }

// markClosed closes a.closing and reports whether this call did it.
func (a *Adapter) markClosed() bool {
	a.liveMu.Lock()
	defer a.liveMu.Unlock()
	if a.isClosed() {
		return false
	}
	close(a.closing)
	return true
}

// spawn runs f on a goroutine the adapter owns (Close waits for it), unless
// the adapter is closing; it reports whether f was started.
func (a *Adapter) spawn(f func()) bool {
	a.liveMu.RLock()
	defer a.liveMu.RUnlock()
	if a.isClosed() {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

func (a *Adapter) isClosed() bool {
	select {
	case <-a.closing:
		return true
	default:
		return false
	}
}

// randomID returns n random alphanumeric characters (Node's uid2 alphabet).
func randomID(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

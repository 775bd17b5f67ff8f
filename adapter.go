package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	socketio "github.com/googollee/go-socket.io"
	"github.com/redis/rueidis"
)

// Adapter makes the go-socket.io servers of a fleet act as one through Redis.
// Create one per *socketio.Server with New, before the server's Serve; all
// its methods are safe for concurrent use.
type Adapter struct {
	server *socketio.Server
	opts   Options
	uid    string
	log    *slog.Logger
	client rueidis.Client
	// reroute.go: in a cluster, the client (as client), which sends a
	// failed master's slots to the promoted replica before rueidis knows
	// of it; nil otherwise
	reroute *rerouter
	conns   *connCounter // conns.go: the client's connections, counted for Stats and closed by a failed probe
	proto   protocol

	// The collaborators, each owning its state:
	namespaces map[string]*namespace // by name; fixed at New
	local      *localSockets         // local.go: this node's sockets in each namespace
	in         *inbox                // route.go: received messages to the workers' queues
	subs       *subscriptionTracker  // receive.go: which subscriptions are live
	rooms      *roomSubs             // rooms.go: room channels' subscriptions; nil without them
	pub        *publisher            // publish.go: the ordered queue of what goes to Redis
	req        *requester            // requests.go: this node's requests waiting for answers
	handlers   serverSideHandlers    // answer.go: ServerSideEmit handlers
	ackTurns   connTurns             // deliver.go: acked emits, one at a time per connection
	loops      supervisor            // supervise.go: keeps connections and subscriptions alive
	probes     []*prober             // probe.go: each namespace's delivery probe
	heal       healWatch             // heal.go: dials Redis while a renewal after a failed probe is stuck
	stats      counters

	// Lifecycle: see Close for the order in which these stop things.
	liveMu  sync.RWMutex       // orders spawn against closing
	closing chan struct{}      // closed once, when the adapter closes
	stop    context.CancelFunc // ends the loops (set by start)
	wg      sync.WaitGroup     // every goroutine the adapter starts
	late    sync.WaitGroup     // the goroutines that end when the client is closed (spawnUntilClientCloses)
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
// a.Of(nsp).OnConnect and OnDisconnect, not with the server, which keeps
// one handler per hook. Call New before server.Serve (go-socket.io stores
// handlers without a lock) and create the server with SessionIDGenerator,
// or socket ids collide across nodes.
//
// New fails with ErrConfig for invalid options or connector, with
// ErrUnavailable (wrapping the cause) when Redis cannot be reached or the
// subscriptions are not confirmed before ctx ends, and with Redis's error
// when it refuses the credentials.
func New(ctx context.Context, server *socketio.Server, c Connector, opts *Options) (*Adapter, error) {
	if server == nil || c == nil {
		return nil, errorf("%w: server and connector are required", ErrConfig)
	}
	c, o, client, conns, err := open(c, opts)
	if err != nil {
		return nil, err
	}
	uid := randomID(6)
	log := o.Logger.With("adapter", "redisadapter", "uid", uid)
	proto := c.protocol(o.Key, uid)
	var reroute *rerouter
	if client.Mode() == rueidis.ClientModeCluster {
		// The room manager reads the slot map for it, or followFailovers.
		reroute = newRerouter(client)
		client = reroute
	}
	a := &Adapter{
		server:     server,
		opts:       o,
		uid:        uid,
		log:        log,
		client:     client,
		reroute:    reroute,
		conns:      conns,
		proto:      proto,
		namespaces: make(map[string]*namespace),
		handlers:   serverSideHandlers{m: make(map[string]ServerSideHandler)},
		closing:    make(chan struct{}),
	}
	a.loops = supervisor{log: log, outages: &a.stats.outages, closes: &conns.closes}
	a.local = &localSockets{server: server, uid: uid, namespaces: a.namespaces, log: log, collisions: &a.stats.collisions}
	a.in = newInbox(a.namespaces, o, a.closing, &a.stats, log)
	a.pub = newPublisher(client, o, uid, log, a.mayPublish, a.heldSince)
	a.req = newRequester(uid, client, a.pub, o.RequestTimeout, 1)
	a.req.reachWithin = o.ProbeTimeout
	for _, name := range o.Namespaces {
		ns := newNamespace(name, a.proto.namespace(name))
		a.namespaces[name] = ns
		server.OnConnect(name, func(conn socketio.Conn) error { return a.connected(ns, conn) })
		server.OnDisconnect(name, func(conn socketio.Conn, reason string) { a.local.onDisconnect(ns, conn, reason) })
	}
	if err := a.start(ctx); err != nil {
		a.shutdown()
		return nil, errorf("starting on %s: %w", redisTarget(c.clientOption()), err)
	}
	return a, nil
}

// start launches the workers, the subscription loops and what the mode
// runs itself, and waits until every subscription is confirmed.
func (a *Adapter) start(ctx context.Context) error {
	loopCtx, stop := context.WithCancel(context.Background())
	a.stop = stop

	for _, name := range a.opts.Namespaces { // before anything is read
		ns := a.namespaces[name]
		ns.probe = newProber(a, ns)
		a.probes = append(a.probes, ns.probe)
	}
	if rc := a.proto.roomChannels(); rc != nil { // before anything is published (heldSince)
		a.rooms = newRoomSubs(loopCtx, a, rc)
	}
	a.goWorker(toBroadcasts, a.handleBroadcast)
	a.goWorker(toRequests, a.handleRequest)
	a.goWorker(toResponses, a.handleResponse)

	var subs []subscription
	for _, ns := range a.namespaces {
		for _, sub := range ns.proto.subscriptions(a.client) {
			for name, q := range sub.routes {
				a.in.routes[name] = route{ns: ns, queue: q}
			}
			subs = append(subs, sub)
		}
	}
	a.subs = newSubscriptionTracker(len(a.in.routes), &a.stats, a.closing)
	a.subs.lostF = a.noteGapStart
	a.subs.restoredF = func() {
		at := time.Now()
		a.pub.outageEnded(at)
		gaps := a.takeGaps()
		a.spawn(func() { a.refreshConnections(loopCtx, at, gaps) })
	}
	for _, sub := range subs {
		a.spawn(func() { a.receiveLoop(loopCtx, sub) })
	}
	a.spawn(func() { a.local.sweep(loopCtx) })
	n := &node{uid: a.uid, client: a.client, in: a.in, loops: a.loops, log: a.log, stats: &a.stats, conns: a.conns,
		probeInterval: a.opts.ProbeInterval, probeTimeout: a.opts.ProbeTimeout,
		spawn: func(f func(context.Context)) bool { return a.spawn(func() { f(loopCtx) }) }}
	if err := a.proto.start(ctx, n); err != nil {
		return err
	}
	if a.rooms != nil {
		a.spawn(a.rooms.run)
	} else if a.reroute != nil {
		a.spawn(func() { a.followFailovers(loopCtx) })
	}
	if a.conns.sentinel != nil {
		a.spawn(func() { a.followMaster(loopCtx) })
	}

	wait, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	if err := a.subs.waitReady(wait); err != nil {
		var refused errRefused
		switch {
		case errors.As(err, &refused) && refused.cmd == "PSUBSCRIBE" && refused.command():
			return errorf("%w: %w; classic mode PSUBSCRIBEs to read broadcasts: set RoomSubscriptions on the connector "+
				"(SUBSCRIBE per room) or use sharded mode (Cluster{Sharded: true})", ErrConfig, refused)
		case errors.As(err, &refused):
			return errorf("subscribing: %w", refused)
		}
		if last := a.subs.lastError(); last != nil {
			return errorf("subscribing: %w", unreachable(last))
		}
		return errorf("%w: subscriptions not confirmed: %w", ErrUnavailable, err)
	}
	for _, p := range a.probes {
		p.lastProof.Store(time.Now().UnixNano()) // confirmed just now
		a.spawn(func() { p.run(loopCtx) })
	}
	return nil
}

// node is what the core lends a mode for the goroutines it runs itself
// (protocol.start): the client, the inbox its messages go to, and the
// supervisor that keeps its connections alive.
type node struct {
	uid    string
	client rueidis.Client
	in     *inbox
	loops  supervisor
	log    *slog.Logger
	stats  *counters
	conns  *connCounter // closeSilent: a stream reader's silent connection
	// probeInterval and probeTimeout are Options': a loop of the mode's
	// own proves its connection delivers on their clock.
	probeInterval, probeTimeout time.Duration
	// spawn runs f on a goroutine the adapter owns, with a context that
	// ends when the adapter closes; false once it is closing.
	spawn func(f func(ctx context.Context)) bool
}

// goWorker runs handle for each message of queue q until the adapter closes.
func (a *Adapter) goWorker(q queueKind, handle func(inbound)) {
	queue := a.in.queues[q]
	a.spawn(func() {
		for {
			select {
			case m := <-queue:
				handle(m)
			case <-a.closing:
				return
			}
		}
	})
}

// UID is this node's id on the wire, unique per Adapter.
func (a *Adapter) UID() string { return a.uid }

func (a *Adapter) namespace(nsp string) (*namespace, error) {
	ns, ok := a.namespaces[normalizeNamespace(nsp)]
	if !ok {
		return nil, errorf("%w: %q", ErrUnknownNamespace, nsp)
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

// SetData sets the data FetchSockets reports for conn, a socket of this
// node: Node's socket.data. data must encode as JSON; it is encoded now, so
// later changes to it are not seen. (go-socket.io's Context is not used: it
// is read and written without a lock.) For a conn that has disconnected it
// does nothing. SetData fails with ErrUnknownNamespace when conn's
// namespace is not served, or with the JSON error. Safe for concurrent use.
func (a *Adapter) SetData(conn socketio.Conn, data any) error {
	ns, err := a.namespace(conn.Namespace())
	if err != nil {
		return err
	}
	b, err := json.Marshal(data)
	if err != nil {
		return errorf("socket data: %w", err)
	}
	if s := a.local.socketFor(ns, conn); s != nil { // nil: conn has disconnected, its data is gone
		s.mu.Lock()
		s.data = b
		s.mu.Unlock()
	}
	return nil
}

// Ping reports whether this node takes part in the fleet, for health
// checks: its subscriptions are live, and its delivery probe (see
// Options.ProbeInterval) came back lately, which proves that what is
// published now reaches this node and that the Redis node taking each
// namespace's publishes answers. It reads state the probe keeps and sends
// nothing, so it answers at once whatever Redis does: a connection that
// went silent fails it within ProbeInterval+ProbeTimeout. It fails with
// ErrUnavailable otherwise, and with ErrClosed after Close; ctx is not
// used.
func (a *Adapter) Ping(ctx context.Context) error {
	if a.isClosed() {
		return ErrClosed
	}
	if err := a.checkSubscribed(); err != nil {
		return err
	}
	if n := a.roomShardsDown(); n > 0 {
		return fmt.Errorf("%w: room channels' connection down to %d Redis masters", ErrUnavailable, n)
	}
	for _, p := range a.probes {
		if !p.healthy() {
			return p.unproven()
		}
	}
	return nil
}

// roomShardsDown is how many Redis masters (the one server outside a
// cluster) the room channels cannot be subscribed on now, or have a
// connection a delivery probe declared dead (at least one when any).
func (a *Adapter) roomShardsDown() int {
	if a.rooms == nil {
		return 0
	}
	return int(max(a.rooms.down.Load(), a.rooms.deadProbes.Load()))
}

// heldSince reports whether this node has held a subscription to the shard
// channel ch since before at, renewed if it was lost (publisher.heldSince).
func (a *Adapter) heldSince(ch string, at time.Time) bool {
	return a.subs.heldSince(ch, at) || (a.rooms != nil && a.rooms.heldSince(ch, at))
}

// mayPublish is the publisher's gate for what a node publishes to the
// fleet: it refuses while a subscription is down, and while a delivery
// probe is failing, until one comes back: the node's connections may be
// on the wrong server (a demoted master that still answers), where a
// publish would be accepted and reach nobody. The error also says it was
// not published (ErrPublish).
func (a *Adapter) mayPublish() error {
	if err := a.checkSubscribed(); err != nil {
		return errorf("%w: not published: %w", ErrPublish, err)
	}
	for _, p := range a.probes {
		if p.dead.Load() {
			return errorf("%w: not published: %w", ErrPublish, p.unproven())
		}
	}
	return nil
}

// checkSubscribed fails with ErrUnavailable while a subscription is down,
// and for a moment after they are back (see settle).
func (a *Adapter) checkSubscribed() error {
	if !a.subs.ready() {
		return errorf("%w: subscriptions are down", ErrUnavailable)
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
	// The order of shutdown, here and in shutdown: closing is closed (no
	// new goroutine is spawned, operations return ErrClosed), pending
	// requests fail, the publisher stops queueing and sends what is queued,
	// the loops' context ends (subscriptions, stream readers, room shards,
	// the sweep) and the workers stop, every goroutine is waited for, the
	// publisher's resends are aborted and the client closed, which fails
	// what the publisher still holds, and the publisher's sender stops.
	if !a.markClosed() {
		return nil
	}
	a.req.pending.failAll(ErrClosed)
	select {
	case <-a.pub.closeNow():
	case <-ctx.Done():
		go a.shutdown() // what is still queued fails once the client is closed
		return errorf("close: queued messages not all sent: %w", ctx.Err())
	}
	unsent := a.pub.takeUnreported()
	done := make(chan struct{})
	go func() {
		a.shutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return errorf("close: %w", ctx.Err())
	}
	if unsent != nil {
		return errorf("close: %w", unsent)
	}
	return nil
}

// shutdown stops the loops and workers, waits for them and closes the
// client (the publisher's queue is empty or abandoned by then: once the
// client is closed its sender fails what is left at once).
func (a *Adapter) shutdown() {
	a.markClosed()
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
	a.pub.abort()
	a.client.Close()
	a.late.Wait()
	<-a.pub.closeNow()
}

// Flush waits until Redis has answered every message this node queued
// before the call (Emit returns once its message is queued) and returns
// the first failure among them that no caller has heard of yet, wrapping
// ErrPublish; ctx's error when it ends first; ErrClosed after Close. A
// failure is reported once: to the first Flush that sees it, or to Close.
// It is safe to call from many goroutines.
func (a *Adapter) Flush(ctx context.Context) error { return a.pub.flush(ctx) }

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

// spawnUntilClientCloses runs f, which may outlive the loops' context (a
// command rueidis holds while it dials) but returns once the client is
// closed, on a goroutine shutdown waits for after closing the client;
// false once the adapter is closing.
func (a *Adapter) spawnUntilClientCloses(f func()) bool {
	a.liveMu.RLock()
	defer a.liveMu.RUnlock()
	if a.isClosed() {
		return false
	}
	a.late.Add(1)
	go func() {
		defer a.late.Done()
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

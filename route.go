package redisadapter

// Routing: every message read from Redis (a subscription's, a room
// channel's, a stream entry) goes through the inbox to one of three
// bounded queues, each drained by one worker: broadcasts (deliver.go),
// requests from other nodes (answer.go) and answers to this node's
// requests (requests.go). So a slow ServerSideEmit handler delays neither
// deliveries nor this node's own requests.
//
// rueidis runs the message callback on the connection's reader goroutine,
// so the callback only routes each message: Redis is read at full speed
// whatever the sockets do (a subscriber that reads too slowly is
// disconnected by Redis and loses everything in flight).

import (
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// queueKind says which worker handles a message.
type queueKind int

const (
	toBroadcasts queueKind = iota
	toRequests
	toResponses
)

// route is where the messages of one channel or pattern go.
type route struct {
	ns    *namespace
	queue queueKind
	room  bool // a room channel's: it comes on a connection of its own (rooms.go)
}

// inbound is a message on its queue, with the namespace its route named:
// the reader routes each message once.
type inbound struct {
	rueidis.PubSubMessage
	ns  *namespace
	req *request // a request decoded already (by the broadcast worker, or a stream reader)
	// at is when it was read (sinceStart), on a namespace's subscriptions;
	// 0 elsewhere. A gap notice's span is read from it (gaps.go).
	at int64
}

// inbox routes received messages to the workers' queues. Its routes are
// fixed once the subscriptions are built; room channels come and go
// (rooms.go) in a sync.Map, which never makes a reader wait.
type inbox struct {
	namespaces map[string]*namespace // by name; fixed at New
	routes     map[string]route      // channel or pattern -> where its messages go
	roomRoutes sync.Map              // a room channel -> its *namespace
	queues     [3]chan inbound       // by queueKind
	maxSize    int                   // Options.MaxMessageSize
	closing    <-chan struct{}       // closed when the adapter closes
	stats      *counters
	log        *slog.Logger
}

func newInbox(namespaces map[string]*namespace, o Options, closing <-chan struct{}, stats *counters, log *slog.Logger) *inbox {
	in := &inbox{
		namespaces: namespaces, routes: make(map[string]route), maxSize: o.MaxMessageSize,
		closing: closing, stats: stats, log: log,
	}
	for q := range in.queues {
		in.queues[q] = make(chan inbound, o.ReceiveQueue)
	}
	return in
}

// routeOf returns where m goes: by its pattern or channel, or to the
// broadcasts of the namespace whose room channel it came on.
func (in *inbox) routeOf(m rueidis.PubSubMessage) (route, bool) {
	key := m.Channel
	if m.Pattern != "" {
		key = m.Pattern
	}
	if r, ok := in.routes[key]; ok {
		return r, true
	}
	if ns, ok := in.roomRoutes.Load(m.Channel); ok {
		return route{ns: ns.(*namespace), queue: toBroadcasts, room: true}, true
	}
	return route{}, false
}

// onMessage runs on rueidis's reader goroutine: it only checks the size and
// routes the message to its queue, never blocking. A node reads its own
// broadcasts back (every node subscribes to the same channels); the ones
// the protocol recognises by their head go no further.
func (in *inbox) onMessage(m rueidis.PubSubMessage) {
	in.stats.received.Add(1)
	if len(m.Message) > in.maxSize {
		in.stats.malformed.Add(1)
		return
	}
	r, ok := in.routeOf(m)
	if !ok {
		return
	}
	var at int64
	if p := r.ns.probe; p != nil && !r.room {
		// The probed connection is not silent (probe.go); a room channel's
		// message came on another connection and proves nothing of it.
		at = sinceStart(time.Now())
		p.reads.Add(1)
		p.lastRead.Store(at)
		if r.queue == toResponses && p.read(m) {
			return // a delivery probe
		}
	}
	if r.queue == toBroadcasts && r.ns.proto.fromNode(m.Message) {
		return
	}
	in.route(r.queue, inbound{PubSubMessage: m, ns: r.ns, at: at})
}

// route puts m on queue q, or drops and counts it when q is full.
func (in *inbox) route(q queueKind, m inbound) {
	select {
	case in.queues[q] <- m:
	default:
		in.stats.queueFull.Add(1)
	}
}

// put puts m on queue q, waiting for room: for a reader of what Redis keeps
// (a stream), which slows down instead of dropping. It returns false once
// the adapter is closing.
func (in *inbox) put(q queueKind, m inbound) bool {
	select {
	case in.queues[q] <- m:
		return true
	case <-in.closing:
		return false
	}
}

// depth is how many messages wait in the queues.
func (in *inbox) depth() int {
	n := 0
	for _, q := range in.queues {
		n += len(q)
	}
	return n
}

// dropped counts and logs a message that could not be decoded.
func (in *inbox) dropped(m rueidis.PubSubMessage, err error) {
	in.stats.malformed.Add(1)
	in.log.Debug("dropped a message", "channel", m.Channel, "bytes", len(m.Message), "err", err)
}

// Package redisadapter lets the go-socket.io (v1.7.0) servers of a fleet act
// as one through Redis: an event emitted on any node reaches the matching
// sockets on every node, sockets on other nodes can be made to join, leave
// or disconnect, and any node can ask the others about their sockets.
//
// It speaks the protocol of Node's @socket.io/redis-adapter 8.x, so Go and
// Node.js servers can share one Redis and one fleet.
//
// # Use
//
//	server := socketio.NewServer(&engineio.Options{
//		SessionIDGenerator: redisadapter.SessionIDGenerator{}, // ids unique across nodes
//	})
//	a, err := redisadapter.New(ctx, server, redisadapter.Standalone{Addr: "127.0.0.1:6379"}, nil)
//	...
//	a.To("post:42").Emit(ctx, "comment", c) // every socket in post:42, on every node
//	...
//	// At shutdown: Close sends what is queued, for as long as its context allows.
//	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	err = a.Close(shutCtx)
//
// # Namespaces
//
// Everything that acts on the fleet is reached through a namespace, as in
// Node: a Namespace from Adapter.Of(nsp), or an Emitter (NewEmitter's is
// the root namespace "/"; Emitter.Of gives another). Its own operations act
// on the whole namespace: every socket (Emit, EmitWithAck, SocketsJoin,
// SocketsLeave, DisconnectSockets, FetchSockets, CountSockets) or its
// servers (AllRooms, ServerCount, ServerSideEmit), on an Emitter as on a
// Namespace. To, Except, Timeout (and, on a Namespace, Local) return a
// selection of its sockets, a BroadcastOperator or an EmitterOperator,
// which has the socket operations only: a server operation on a selection
// does not compile. An Emitter is not a server: it subscribes, in a
// namespace, only to the answers to its own requests, from its first
// request there until Close.
// Adapter.To(rooms...) is a.Of("/").To(rooms...). The namespace's handlers
// are registered on it too: a.Of(nsp).OnConnect, OnDisconnect and
// OnServerSideEmit. Adapter.SetData reads the namespace from the conn.
//
// # Deployment shapes
//
// The Connector picks how Redis is reached: Standalone, Sentinel (follows
// failovers) or Cluster, classic (PUBLISH over the cluster bus, as Node's
// createAdapter) or sharded (SPUBLISH/SSUBSCRIBE on Redis 7, as Node's
// createShardedAdapter). Streams wraps any of them in streams mode (Node's
// @socket.io/redis-streams-adapter 0.3.x): broadcasts through a Redis
// stream, which a node reads from where it stopped after a dropped
// connection. FromEnv and ParseURL build one from REDIS_URL and friends
// (REDIS_STREAMS=true for streams mode). Nothing else in the code changes
// between them. In classic mode, RoomSubscriptions (on Standalone, Sentinel
// or Cluster) makes a node SUBSCRIBE to the channels of the rooms it holds
// instead of PSUBSCRIBE to all, on the same wire: it reads only the
// broadcasts that concern it.
//
// Room membership stays where go-socket.io keeps it (conn.Join and
// conn.Leave); the adapter reads it. In the modes that subscribe per room
// (sharded, RoomSubscriptions), Adapter.Join joins and returns once the
// node receives the rooms' broadcasts; a room joined with conn.Join is
// found by polling, within 50 to 200 ms. go-socket.io has no adapter hook, so
// the adapter registers the OnConnect and OnDisconnect handlers of the
// namespaces it serves: register yours with Namespace.OnConnect and
// Namespace.OnDisconnect.
//
// # Delivery
//
// Redis pub/sub is at-most-once: a message published while a node is
// disconnected from Redis never reaches that node. In streams mode a
// broadcast reaches it once it is back, in order, once. An XADD that fails
// in a way that may have left it out of Redis (a dropped connection, a
// timeout, a Redis loading or failing over) is sent again until Redis takes
// it, and Go readers drop the second copy when the first had been written
// after all (a Node.js reader delivers it twice); while Redis is away Emit
// queues entries without waiting for them, up to Options.PublishQueue.
// Streams mode still loses: entries trimmed before a node read them (more
// than MaxLen published while it was away; Stats.StreamGaps), a failover's
// unreplicated tail, everything on a restart of a Redis without AOF, an
// entry Redis refuses for good and entries still being resent when Close
// gives up (both reported), and requests and answers in an outage (the
// requester times out). The adapter reads Redis at full speed whatever the
// sockets do; a local socket that does not keep up
// has its own bounded queue (Options.SocketQueue) and misses events past it,
// counted in Stats.SlowSocketDrops, rather than stalling the others.
//
// While its subscriptions are down (Redis lost, a failover) a node knows
// it: Ping fails, Emit and the remote operations do not publish (in
// streams mode broadcasts still go to the stream, for the others to read),
// and requests wait for the subscriptions within their timeout; all of them
// then fail with ErrUnavailable. Every connection the adapter keeps (its
// subscriptions, stream readers and room channels' connections) is renewed
// by one supervisor, every 50 ms at most while Redis is away; each outage
// is logged once when it begins and once when it ends, and counted in
// Stats.Outages.
//
// A connection can also stay open and carry nothing (a frozen Redis, a
// flow a NAT dropped, a subscription a proxy lost). So each node proves
// delivery: once its own channel has been quiet for Options.ProbeInterval
// it publishes a probe there and waits Options.ProbeTimeout for it. A
// probe that does not come back fails Ping, is counted in
// Stats.ProbeFailures, and closes the node's connections, whose
// subscriptions are renewed on new ones: with the defaults a silent
// connection is found within 1.2 s (while it still reads other messages,
// the probe is waited for up to four ProbeTimeouts more), for about 2.5
// PUBLISHes per second and namespace on an idle node. The room channels'
// connections (sharded mode, classic with RoomSubscriptions: one per Redis
// master) are probed each on its own, on a channel of the node's whose slot
// that master serves, and renewed alone (2.5 more per second and master
// holding the node's rooms). Ping reads that state and answers at once. Meanwhile the operations on local sockets still reach them:
// EmitWithAck returns the local clients' acknowledgements with an
// ErrUnavailable saying the other nodes were not reached.
//
// # Publishing
//
// Emit, and SocketsJoin, SocketsLeave and DisconnectSockets, encode their
// message once, in the protocol's form (msgpack using the arguments' json
// struct tags in classic mode, JSON in sharded and streams modes), so
// clients on any node receive the JSON they would get from a local emit.
// They return once the message is queued for Redis, without waiting for
// it: one goroutine per Adapter (or Emitter) sends what waits as one
// pipeline, so consecutive Emits leave together, in the order they were
// called on this node, and reach each client in that order (in sharded
// mode, within each room: rooms live on different shards). Flush waits for
// Redis to take them and reports the first failure since the last Flush;
// failures are also counted in Stats.PublishFailures and logged. A full
// queue (Options.PublishQueue bytes) blocks Emit, up to its context and
// RequestTimeout. When the last batch did not reach Redis, Emit waits for
// its own message's answer instead and returns it.
//
// While this node's subscriptions are down Emit does not publish and fails
// with ErrPublish and ErrUnavailable: the other nodes' subscriptions are
// most likely down too, and an event that was not sent can be sent again
// without a duplicate. In streams mode (Streams) it publishes anyway: the
// entry waits in the stream for every node, queued (up to PublishQueue)
// and sent again until Redis takes it.
//
// # Acknowledgements
//
// EmitWithAck is Node's emitWithAck and timeout(ms).emit(event, ...,
// callback). Each other node reports how many of its clients it emitted to,
// then forwards each one's acknowledgement; the call waits for exactly
// those, and nothing past the timeout.
//
// go-socket.io's Conn.Emit with an ack callback is not safe for concurrent
// use: it numbers acks with an unsynchronized counter of the connection,
// shared by its namespaces. The adapter makes its own acked emits
// (EmitWithAck's, and those of other nodes' broadcasts with
// acknowledgements) take turns per connection, but cannot make yours take
// part: once any server of the fleet emits with acknowledgements, do not
// call Conn.Emit with a callback; use
// a.Of(nsp).To(conn.ID()).Local().EmitWithAck instead.
//
// Do not wait for the acknowledgement of a client inside one of its own
// event handlers: go-socket.io reads the acknowledgement on the goroutine
// running the handler, so it arrives only after the call timed out. Leave
// the client out with Except(conn.ID()), or call from another goroutine.
//
// go-socket.io keeps an acknowledgement callback until the client answers
// or disconnects, with no deadline. So a socket is asked for at most 64
// unanswered acknowledgements: past that it gets the event without the
// request and counts as not answering, and a client that never answers
// holds no more.
//
// # Hostile clients
//
// go-socket.io reads a client's message whatever its size. ClientLimits
// wraps its engine.io transports so that a client sending more than
// MaxMessageSize bytes in one message (1 MB by default, as Node's
// maxHttpBufferSize) is disconnected before more is read; it needs no
// Adapter and suits any go-socket.io v1.7.0 server. It also refuses, at
// the handshake, the clients go-socket.io cannot serve: socket.io-client
// 3.x and 4.x (Engine.IO 4) get a 400 saying to use socket.io-client 2.x
// (or 1.x). Its websocket connections write the frames that wait for one
// client, the adapter's and go-socket.io's own, in one write syscall.
//
// # Concurrency
//
// Every method of Adapter, Namespace, BroadcastOperator, Emitter and
// EmitterOperator is safe for concurrent use; Namespace, BroadcastOperator,
// Emitter and EmitterOperator are small values that can be copied and
// shared. go-socket.io's own Conn.Emit with an ack callback is not (see
// Acknowledgements). Requests to other nodes and publishes take a context
// and return within Options.RequestTimeout; Ping, Flush and Close wait as
// long as their context allows.
package redisadapter

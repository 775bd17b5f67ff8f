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
// Everything that acts on the fleet is reached through a namespace: a
// BroadcastOperator from Adapter.Of(nsp), or an Emitter from Emitter.Of(nsp)
// (Adapter.To and an Emitter's own methods are the root namespace "/").
// To, Except (and, on a BroadcastOperator, Local) narrow it to sockets,
// which Emit, EmitWithAck, SocketsJoin, SocketsLeave, DisconnectSockets,
// FetchSockets and CountSockets act on; AllRooms, ServerCount and
// ServerSideEmit act on the namespace's servers, and fail with ErrConfig on
// a narrowed one. Registrations take the namespace as go-socket.io's own
// server.OnConnect does: Adapter.OnConnect, OnDisconnect, OnServerSideEmit
// and SetData.
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
// between them.
//
// Room membership stays where go-socket.io keeps it (conn.Join and
// conn.Leave); the adapter reads it. go-socket.io has no adapter hook, so
// the adapter registers the OnConnect and OnDisconnect handlers of the
// namespaces it serves: register yours with Adapter.OnConnect and
// Adapter.OnDisconnect.
//
// # Delivery
//
// Redis pub/sub is at-most-once: a message published while a node is
// disconnected from Redis never reaches that node. In streams mode a
// broadcast reaches it once it is back, unless the stream was trimmed past
// it meanwhile (counted in Stats.StreamGaps); see Streams. The adapter reads Redis at
// full speed whatever the sockets do; a local socket that does not keep up
// has its own bounded queue (Options.SocketQueue) and misses events past it,
// counted in Stats.SlowSocketDrops, rather than stalling the others.
//
// While its subscriptions are down (Redis lost, a failover) a node knows
// it: Ping fails, Emit and the remote operations do not publish (in
// streams mode broadcasts still go to the stream, for the others to read),
// and requests wait for the subscriptions within their timeout; all of them
// then fail with ErrUnavailable. The subscriptions are renewed every 50 ms
// at most while Redis is away.
//
// # Hostile clients
//
// go-socket.io reads a client's message whatever its size. ClientLimits
// wraps its engine.io transports so that a client sending more than
// MaxMessageSize bytes in one message (1 MB by default, as Node's
// maxHttpBufferSize) is disconnected before more is read; it needs no
// Adapter and suits any go-socket.io v1.7.0 server.
//
// # Concurrency
//
// Every method of Adapter, BroadcastOperator and Emitter is safe for
// concurrent use.
// go-socket.io's own Conn.Emit with an ack callback is not (its ack ids
// come from an unsynchronized counter of the connection): the adapter's
// acked emits take turns per connection, and yours should go through
// BroadcastOperator.EmitWithAck too (see there).
// Requests to other nodes and publishes take a context and return within
// Options.RequestTimeout; Ping, Flush and Close wait as long as their
// context allows.
package redisadapter

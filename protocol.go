package redisadapter

// The seam between the core and the two wire protocols of Node's adapters:
// classic (createAdapter: PUBLISH/SUBSCRIBE, wire.go) and sharded
// (createShardedAdapter: SPUBLISH/SSUBSCRIBE on Redis 7, sharded.go). The
// core speaks in requests, answers and broadcast frames; a protocol turns
// them into channels and bytes and back.

import "github.com/redis/rueidis"

type protocol interface {
	// subscriptions are the subscriptions a node keeps for a namespace,
	// whatever rooms it has.
	subscriptions(c rueidis.Client, key, nsp, uid string) []subscription
	// roomOf is the room a broadcast channel names ("" for the namespace's
	// channel): a node without local sockets in it skips the message.
	roomOf(key, nsp, channel string) string

	encodeBroadcast(key, uid, nsp string, sel selector, event string, args []any) (channel string, payload []byte, err error)
	encodeRequest(key, nsp string, r request) (channel string, payload []byte, err error)
	encodeAnswer(key, nsp, uid string, to request, a answer) (channel string, payload []byte, err error)

	// decodeBroadcast decodes a message of the broadcast queue; an
	// errIsRequest error says it is a request, for the request queue.
	decodeBroadcast(msg string) (broadcastFrame, error)
	// fromNode reports, without decoding msg, that it is a broadcast the
	// node uid published; false when the protocol cannot tell cheaply.
	fromNode(msg, uid string) bool
	decodeRequest(msg string) (request, error)
	decodeResponse(msg string) (response, error)

	// publish builds the command that sends payload to channel; a stream
	// entry is numbered seq by its producer (see streams.publish), anything
	// else gets "" and 0.
	publish(c rueidis.Client, channel string, payload []byte, producer string, seq uint64) rueidis.Completed
	// ping is a PING to the Redis node that takes the namespace's
	// publishes: in a cluster, the owner of their slot (a PING without a
	// slot goes to the first seed address, which may be down while the
	// cluster serves).
	ping(c rueidis.Client, key, nsp string) rueidis.Completed
	// countCommand counts the servers of a namespace on one Redis node;
	// the core sums it over every node.
	countCommand(c rueidis.Client, key, nsp string) (cmd rueidis.Completed, channel string)
	// asksFor reports whether the protocol has the request type; the core
	// emulates the others with a fetch.
	asksFor(t requestType) bool
}

// roomChannels is what a protocol that publishes one-room broadcasts on the
// room's own channel (sharded) adds: a node subscribes to that channel while
// it has local sockets in the room (rooms.go).
type roomChannels interface {
	// roomChannel is the channel of room, false when the room has none
	// (nothing is ever published on it).
	roomChannel(key, nsp, room string) (string, bool)
	// subscribeRoom and unsubscribeRoom build the command for one channel,
	// which also gives the channel's cluster slot.
	subscribeRoom(b rueidis.Builder, channel string) rueidis.Completed
	unsubscribeRoom(b rueidis.Builder, channel string) rueidis.Completed
}

// queueKind says which worker handles the messages of a subscription.
type queueKind int

const (
	toBroadcasts queueKind = iota
	toRequests
	toResponses
)

// subscription is one Receive: its command, and what each channel or
// pattern it confirms carries.
type subscription struct {
	build  func() rueidis.Completed
	routes map[string]queueKind
}

// answer is what the core sends back to a request; the protocol encodes it
// in the shape the requester expects.
type answer struct {
	ids         []string       // typeSockets
	rooms       []string       // typeAllRooms
	sockets     []RemoteSocket // typeRemoteFetch
	ack         any            // typeServerSideEmit (JSON raw) or typeBroadcast (a client's ack)
	clientCount *int           // typeBroadcast: how many local clients got it
}

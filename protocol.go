package redisadapter

// The seam between the core and the three wire protocols of Node's
// adapters: classic (createAdapter: PUBLISH/SUBSCRIBE, classic.go), sharded
// (createShardedAdapter: SPUBLISH/SSUBSCRIBE on Redis 7, sharded.go) and
// streams (@socket.io/redis-streams-adapter, streams.go). The core speaks
// in the neutral model (model.go); a protocol turns it into channels and
// bytes and back. A connector makes its protocol once per Adapter or
// Emitter, bound to the key prefix and the node's uid, and the protocol is
// bound to each namespace once more, which builds the namespace's channel
// names (channels.go).

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// protocol is a wire protocol bound to a key prefix and a node uid.
type protocol interface {
	// namespace binds the protocol to namespace nsp too.
	namespace(nsp string) nsProtocol
	// asksFor reports whether the protocol has the request type; the core
	// emulates the others with a fetch.
	asksFor(t requestType) bool
	// roomChannels is how a node subscribes to a room's own channel while
	// it has local sockets in the room (rooms.go); nil when the protocol
	// publishes no broadcast on a room's channel.
	roomChannels() roomChannels
	// start starts what the mode runs beside the subscriptions (streams:
	// a reader per stream) on goroutines of n's, and returns once anything
	// published after it returns will be read.
	start(ctx context.Context, n *node) error
}

// nsProtocol is a protocol bound to one namespace as well.
type nsProtocol interface {
	// subscriptions are the subscriptions a node keeps for the namespace,
	// whatever rooms it has.
	subscriptions(c rueidis.Client) []subscription
	// answers is the subscription to the answers to this uid's requests,
	// and to nothing else a server reads (not to the channel the server
	// count counts): an Emitter's, which serves nothing.
	answers(c rueidis.Client) subscription
	// roomOf is the room a broadcast channel names ("" for the namespace's
	// channel): a node without local sockets in it skips the message.
	roomOf(channel string) string
	// fromNode reports, without decoding msg, that it is a broadcast this
	// node published; false when the protocol cannot tell cheaply.
	fromNode(msg string) bool

	encodeBroadcast(sel selector, event string, args []any) (message, error)
	encodeRequest(r request) (message, error)
	encodeAnswer(to request, a answer) (message, error)
	// command builds the command that sends m; seq numbers a durable
	// message (zero otherwise).
	command(b rueidis.Builder, m message, seq seqNo) rueidis.Completed

	// decodeBroadcast decodes a message of the broadcast queue: a
	// broadcast, or, when req is not nil, a request (the sharded protocols
	// send both on the namespace's channel).
	decodeBroadcast(msg string) (f broadcastFrame, req *request, err error)
	decodeRequest(msg string) (request, error)
	decodeAnswer(msg string) (answer, error)

	// ping is a PING to the Redis node that takes the namespace's
	// publishes: in a cluster, the owner of their slot (a PING without a
	// slot goes to the first seed address, which may be down while the
	// cluster serves).
	ping(c rueidis.Client) rueidis.Completed
	// probeChannel is this node's own channel, which only it reads (a
	// Node.js server never reads another's): the delivery probe goes there
	// (probe.go), sent with command.
	probeChannel() string
	// countCommand counts the servers of the namespace on one Redis node;
	// the core sums it over every node.
	countCommand(c rueidis.Client) (cmd rueidis.Completed, channel string)
}

// message is an encoded message, as the encoders return it.
type message struct {
	// channel is where it goes: a pub/sub channel, or the stream's key of
	// a durable message. Errors name it.
	channel string
	payload []byte
	// durable: Redis keeps the message (a stream entry) until every node
	// read it. The publisher numbers durable messages in sending order and
	// sends one again after a failure that may have left it out of Redis
	// (resend.go); readers drop the second copy that can leave.
	durable bool
	// kind is the protocol's type of a message whose command carries it
	// apart from the payload (a stream entry's type field).
	kind int
	// audience, for a pub/sub broadcast every node reads, is what the
	// publisher knows of its subscribers (checkReach); nil otherwise.
	audience *audience
	// readers is who reads it: what a node that could not read missed
	// (gaps.go).
	readers readers
	// sent, when set, counts it once Redis took it (gaps.go): set on the
	// Adapter's messages that wait for no answer (target.go).
	sent *sentLog
}

// readers is who reads a pub/sub message, for gap notices (gaps.go).
type readers uint8

const (
	readersNone readers = iota // no gap counts it: a stream entry, an answer
	readersAll                 // every node's subscriptions to the namespace
	readersRoom                // the nodes holding the room, on their room channels' connections
)

// seqNo numbers a durable message: the producer is a random name per
// publisher, n its count of durable messages built, in sending order.
type seqNo struct {
	producer string
	n        uint64
}

// field is the number as a stream entry's seq field holds it: "<producer>:<n>".
func (s seqNo) field() string {
	b := make([]byte, 0, len(s.producer)+1+20)
	b = append(append(b, s.producer...), ':')
	return rueidis.BinaryString(strconv.AppendUint(b, s.n, 10))
}

// roomChannels is what a protocol that publishes one-room broadcasts on the
// room's own channel (sharded, classic with RoomSubscriptions) adds: a node
// subscribes to that channel while it has local sockets in the room
// (rooms.go).
type roomChannels interface {
	// roomChannel is the channel of room in namespace nsp, false when the
	// room has none (nothing this node must read is published on it).
	// private: room is a local socket's own id room.
	roomChannel(nsp, room string, private bool) (string, bool)
	// subscribeRoom and unsubscribeRoom build the command for one channel,
	// which also gives the channel's cluster slot.
	subscribeRoom(b rueidis.Builder, channel string) rueidis.Completed
	unsubscribeRoom(b rueidis.Builder, channel string) rueidis.Completed
	// publishRoom builds the command that publishes payload on channel,
	// read by the subscriptions subscribeRoom makes (the delivery probe of
	// a room channels' connection).
	publishRoom(b rueidis.Builder, channel, payload string) rueidis.Completed
}

// subscription is one Receive: its command, and what each channel or
// pattern it confirms carries.
type subscription struct {
	build  func() rueidis.Completed
	routes map[string]queueKind
}

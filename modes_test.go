package redisadapter_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/blogstack/redisadapter"
)

// features says how a mode behaves where the suite must know it
// (watermill's tests.Features): each caller of suite passes them, and the
// suite asks them, never the connector's type.
type features struct {
	// RoomSubscriptions: a node subscribes to a room's channel only while a
	// local socket is in the room, shortly after it joins (go-socket.io
	// does not report joins) or when Adapter.Join returns, and misses the
	// room's broadcasts before that (sharded pub/sub; classic with the
	// connectors' RoomSubscriptions).
	RoomSubscriptions bool
	// NodeChannels: requests go on the namespace's channel and answers on
	// the requester's own "<key>#<nsp>#<uid>#" (the ClusterAdapter
	// messages: sharded, streams); otherwise requests and answers have
	// channels of their own, "<key>-request#<nsp>#" and
	// "<key>-response#<nsp>#[<uid>#]" (classic).
	NodeChannels bool
	// ShardedPubSub: pub/sub messages are SPUBLISHed, not PUBLISHed.
	ShardedPubSub bool
	// Streams: broadcasts, joins, leaves and disconnects are entries of a
	// Redis stream (named like the test's key), not pub/sub messages; rooms
	// have no channels.
	Streams bool
}

// The features of each mode the suite runs.
var (
	classicMode      = features{}
	classicRoomsMode = features{RoomSubscriptions: true}
	shardedMode      = features{RoomSubscriptions: true, NodeChannels: true, ShardedPubSub: true}
	streamsMode      = features{NodeChannels: true, Streams: true}
	streamsOnSharded = features{NodeChannels: true, Streams: true, ShardedPubSub: true}
)

// defaultNames are the names under the default key, for tests on a Redis
// of their own.
var defaultNames = names{key: "socket.io"}

// names builds the channel and stream names a test needs from its key
// prefix, in the Node adapters' "#"-delimited layout (written here from
// their documentation, not taken from the package, so that a test checks
// the layout).
type names struct{ key string }

// namespace is "<key>#<nsp>#": broadcasts (pub/sub modes), and requests
// with NodeChannels.
func (n names) namespace(nsp string) string { return n.key + "#" + nsp + "#" }

// room is "<key>#<nsp>#<room>#", where a broadcast to exactly that room goes.
func (n names) room(nsp, room string) string { return n.key + "#" + nsp + "#" + room + "#" }

// own is a node's own channel with NodeChannels, "<key>#<nsp>#<uid>#".
func (n names) own(nsp, uid string) string { return n.room(nsp, uid) }

// requests is the classic protocol's request channel, "<key>-request#<nsp>#".
func (n names) requests(nsp string) string { return n.key + "-request#" + nsp + "#" }

// responses is the classic protocol's answer channel, "<key>-response#<nsp>#",
// or with a uid the requester's own "<key>-response#<nsp>#<uid>#".
func (n names) responses(nsp, uid string) string {
	if uid == "" {
		return n.key + "-response#" + nsp + "#"
	}
	return n.key + "-response#" + nsp + "#" + uid + "#"
}

// stream is the Redis stream of a streams mode (Streams.Name, Count 1).
func (n names) stream() string { return n.key }

// env is one suite test's deployment: the mode's connector and features,
// under a key prefix (and stream name) of the test's own, so that on a
// Redis shared with other tests (sharedSentinel, sharedCluster) exact
// counts see only this test's nodes.
type env struct {
	features
	names
	c redisadapter.Connector
}

var keys atomic.Int64

// uniqueKey is a key prefix no other test of the process uses: the test's
// name (without the '#' a key must not hold) and a sequence number.
func uniqueKey(t testing.TB) string {
	return strings.ReplaceAll(t.Name(), "#", "_") + "-" + strconv.FormatInt(keys.Add(1), 10)
}

// newEnv gives t a key of its own and the connector connect returns for it
// (name is the stream's name for a streams mode).
func newEnv(t *testing.T, f features, connect func(name string) redisadapter.Connector) env {
	key := uniqueKey(t)
	return env{features: f, names: names{key: key}, c: connect(key)}
}

// options is opts (nil: the defaults) under e's key.
func (e env) options(opts *redisadapter.Options) *redisadapter.Options {
	var o redisadapter.Options
	if opts != nil {
		o = *opts
	}
	o.Key = e.key
	return &o
}

// node starts a node of e (opts nil: the defaults).
func (e env) node(t *testing.T, opts *redisadapter.Options) *node {
	t.Helper()
	return startNode(t, e.c, e.options(opts))
}

// nodes starts two nodes of e with the same options.
func (e env) nodes(t *testing.T, opts *redisadapter.Options) (*node, *node) {
	t.Helper()
	return e.node(t, opts), e.node(t, opts)
}

// roomSubscribed waits, with RoomSubscriptions, until nodes nodes
// subscribe to the channel of room in "/". Other modes need no wait.
func (e env) roomSubscribed(t *testing.T, room string, nodes int64) {
	t.Helper()
	switch {
	case e.RoomSubscriptions && e.ShardedPubSub:
		shardSubscribers(t, e.c, e.room("/", room), nodes)
	case e.RoomSubscriptions:
		channelSubscribers(t, e.c, e.room("/", room), nodes)
	}
}

// channelSubscribers waits until PUBSUB NUMSUB of ch, summed over every Redis
// node (a cluster's subscriptions sit on any node), says nodes.
func channelSubscribers(t *testing.T, c redisadapter.Connector, ch string, nodes int64) {
	t.Helper()
	raw := rawClient(t, c)
	eventually(t, "nodes subscribed to "+ch, func() bool {
		var sum int64
		for _, n := range raw.Nodes() {
			m, err := n.Do(bg(t), n.B().PubsubNumsub().Channel(ch).Build()).AsIntMap()
			if err != nil {
				return false
			}
			sum += m[ch]
		}
		return sum == nodes
	})
}

// shardSubscribers waits until PUBSUB SHARDNUMSUB of ch says nodes.
func shardSubscribers(t *testing.T, c redisadapter.Connector, ch string, nodes int64) {
	t.Helper()
	raw := rawClient(t, c)
	eventually(t, "nodes subscribed to "+ch, func() bool {
		n, err := raw.Do(bg(t), raw.B().PubsubShardnumsub().Channel(ch).Build()).AsIntMap()
		return err == nil && n[ch] == nodes
	})
}

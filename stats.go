package redisadapter

import (
	"sync/atomic"
	"time"
)

// Stats are the adapter's counters since New. Read them with Adapter.Stats.
type Stats struct {
	// Published counts messages Redis took from this node (broadcasts, requests, responses),
	// but for those counted in PublishFailures.
	Published uint64
	// PublishFailures counts queued messages Redis did not take
	// (unreachable, refused, timed out); in sharded mode, broadcasts the
	// server that took them delivered to no subscriber of its own, not even
	// this node's (a master demoted while it was frozen; a few of those
	// reach the promoted replica's subscribers through the cluster bus);
	// and, where Redis's answer counts the fleet's subscribers (classic
	// mode on one server, standalone or Sentinel; sharded mode), broadcasts
	// published within 3 s (twice ProbeInterval + ProbeTimeout when longer)
	// of this node's subscriptions coming back from an outage that reached
	// fewer subscribers than before it, until the count is back (the
	// others' subscriptions not renewed yet; some may have received them),
	// broadcasts every node reads that reached nobody, not even this
	// node, after others read the last ones (Redis cut every subscriber
	// off); and, in pub/sub modes, broadcasts and remote operations every
	// node reads that this node published while another Go node could not
	// read, counted when that node's gap notice comes (a few published just
	// outside the span count too; see docs/delivery.md).
	PublishFailures uint64
	// Resent counts stream entries sent again because a try may not have reached Redis, in streams mode.
	Resent uint64
	// Received counts messages read from Redis, own messages included.
	Received uint64
	// Malformed counts received messages dropped as undecodable, oversized or of unknown type.
	Malformed uint64
	// QueueFull counts received messages dropped because a receive queue was full.
	QueueFull uint64
	// SlowSocketDrops counts events not delivered to a local socket whose queue was full.
	SlowSocketDrops uint64
	// RequestTimeouts counts requests that ended before every node answered
	// (for EmitWithAck: before every node and every client answered).
	RequestTimeouts uint64
	// Resubscribes counts subscriptions renewed after a dropped connection or a server-side unsubscribe.
	Resubscribes uint64
	// Outages counts the times a connection or subscription the adapter keeps (a subscription, a stream reader, a room channels' connection) was lost; each is logged as a warning, and its end at info level.
	Outages uint64
	// StreamGaps counts the times this node found stream entries trimmed (or deleted) before it read them, in streams mode: broadcasts it never delivered. Each is logged.
	StreamGaps uint64
	// StreamDuplicates counts stream entries dropped as a second copy a publisher's resend left, in streams mode.
	StreamDuplicates uint64
	// ProbeFailures counts delivery checks that failed: a namespace's probe that did not come back within Options.ProbeTimeout (or, with Sentinel, a server that is not the master), which closed the node's connections to Redis so that its subscriptions were renewed on new ones (see Ping); a room channels' connection's probe, or a stream reader's XREAD that went unanswered, which renewed that connection alone.
	ProbeFailures uint64
	// ProbeLag is the round trip of the last delivery probe (publish to read back), the largest over the namespaces.
	ProbeLag time.Duration
	// ProbeLagMedian is the median probe round trip of the last 64 probes of each namespace (the largest over the namespaces).
	ProbeLagMedian time.Duration
	// ProbeLagMax is the largest probe round trip of the last 64 probes of each namespace (about 25 s of an idle node with the defaults).
	ProbeLagMax time.Duration
	// IDCollisions counts socket ids seen on two nodes at once, or not made by SessionIDGenerator.
	IDCollisions uint64
	// QueueDepth is how many received messages wait to be handled now.
	QueueDepth int
	// Sockets is how many sockets of this node the adapter tracks now, over every namespace.
	Sockets int
	// Subscribed is whether every subscription of this node is live now, room channels' connections included.
	Subscribed bool

	// Connections to Redis and Sentinel open now, by kind, counted at the dialer (conns.go; the
	// "Connections to Redis" in docs/operations.md has the numbers per mode). Their sum is what this node
	// takes of the servers' maxclients.
	//
	// PipelinedConns are rueidis's pipelined connections: 1 to 4 per Redis node (1 per node in a
	// cluster), each opened on first use; they carry the commands, the publishes and every
	// subscription but the room channels'. A connection rueidis keeps idle in its pool after a
	// stream reader gave it back counts here (a room channels' connection is closed instead).
	PipelinedConns int
	// RoomConns are the dedicated connections holding room channels: one per Redis master with
	// rooms of this node's sockets (sharded mode, and classic mode with RoomSubscriptions, where
	// outside a cluster it is the one server).
	RoomConns int
	// StreamReaderConns are the connections the stream readers' XREAD BLOCK holds: one per stream
	// read (streams mode).
	StreamReaderConns int
	// SentinelConns are the connections to Sentinels (Sentinel connector): one.
	SentinelConns int

	// Subscriptions held now (confirmed by Redis): SubscribedChannels (SUBSCRIBE),
	// SubscribedPatterns (PSUBSCRIBE) and SubscribedShardChannels (SSUBSCRIBE), room channels
	// included, and StreamsRead, the streams this node reads (streams mode).
	SubscribedChannels      int
	SubscribedPatterns      int
	SubscribedShardChannels int
	StreamsRead             int
}

type counters struct {
	received, malformed, queueFull, slowSocket, resubscribes, outages, collisions, streamGaps, streamDuplicates, probeFailures atomic.Uint64

	streamReaders atomic.Int64           // running, for Stats.StreamsRead
	roomSubs      [subKinds]atomic.Int64 // held by the room channels' connections
}

// Stats returns a snapshot of the counters. It is cheap and never blocks
// for long.
func (a *Adapter) Stats() Stats {
	c := &a.stats
	lag, lagMedian, lagMax := a.probeLag()
	s := Stats{
		Published:        a.pub.published.Load(),
		PublishFailures:  a.pub.failures.Load(),
		Resent:           a.pub.resent.Load(),
		Received:         c.received.Load(),
		Malformed:        c.malformed.Load(),
		QueueFull:        c.queueFull.Load(),
		SlowSocketDrops:  c.slowSocket.Load(),
		RequestTimeouts:  a.req.timeouts.Load(),
		Resubscribes:     c.resubscribes.Load(),
		Outages:          c.outages.Load(),
		ProbeFailures:    c.probeFailures.Load(),
		ProbeLag:         lag,
		ProbeLagMedian:   lagMedian,
		ProbeLagMax:      lagMax,
		IDCollisions:     c.collisions.Load(),
		StreamGaps:       c.streamGaps.Load(),
		StreamDuplicates: c.streamDuplicates.Load(),
		QueueDepth:       a.in.depth(),
		Sockets:          a.local.count(),
		Subscribed:       a.subs.isLive() && a.roomShardsDown() == 0,
	}
	a.connStats(&s)
	return s
}

// connStats fills the connection and subscription counts of s.
func (a *Adapter) connStats(s *Stats) {
	conns := a.conns.counts()
	s.PipelinedConns, s.RoomConns, s.StreamReaderConns, s.SentinelConns = conns.pipelined, conns.rooms, conns.streamReaders, conns.sentinels
	var subs [subKinds]int
	a.subs.held(&subs)
	for k := range subs {
		subs[k] += int(a.stats.roomSubs[k].Load())
	}
	s.SubscribedChannels, s.SubscribedPatterns, s.SubscribedShardChannels = subs[subChannel], subs[subPattern], subs[subShardChannel]
	s.StreamsRead = int(a.stats.streamReaders.Load())
}

// EmitterStats are an Emitter's counters since NewEmitter, shared by every
// Emitter derived from it: the part of Stats that applies to a process
// that publishes and asks but serves no socket. Read them with
// Emitter.Stats.
type EmitterStats struct {
	// Published counts messages Redis took from the Emitter (broadcasts, requests).
	Published uint64
	// PublishFailures counts queued messages Redis did not take (unreachable, refused, timed out).
	PublishFailures uint64
	// Resent counts stream entries sent again because a try may not have reached Redis, in streams mode.
	Resent uint64
	// Received counts answers read from Redis.
	Received uint64
	// Malformed counts answers dropped as undecodable or oversized.
	Malformed uint64
	// QueueFull counts answers dropped because the answer queue (ReceiveQueue) was full.
	QueueFull uint64
	// RequestTimeouts counts requests that ended before every server answered.
	RequestTimeouts uint64
	// Resubscribes counts answer subscriptions renewed after a dropped connection.
	Resubscribes uint64
	// Outages counts the times an answer subscription was lost; each is logged.
	Outages uint64
	// PipelinedConns and SentinelConns are the connections open now, as in Stats.
	PipelinedConns int
	SentinelConns  int
	// SubscribedChannels and SubscribedShardChannels are the answer subscriptions held now (one
	// per namespace the Emitter asked something in).
	SubscribedChannels      int
	SubscribedShardChannels int
}

// Stats returns a snapshot of the Emitter's counters. It is cheap and
// never blocks for long.
func (e Emitter) Stats() EmitterStats {
	core := e.all.core
	c := &core.stats
	conns := core.conns.counts()
	var subs [subKinds]int
	core.answers.held(&subs)
	return EmitterStats{
		Published:               core.pub.published.Load(),
		PublishFailures:         core.pub.failures.Load(),
		Resent:                  core.pub.resent.Load(),
		Received:                c.received.Load(),
		Malformed:               c.malformed.Load(),
		QueueFull:               c.queueFull.Load(),
		RequestTimeouts:         core.req.timeouts.Load(),
		Resubscribes:            c.resubscribes.Load(),
		Outages:                 c.outages.Load(),
		PipelinedConns:          conns.pipelined,
		SentinelConns:           conns.sentinels,
		SubscribedChannels:      subs[subChannel],
		SubscribedShardChannels: subs[subShardChannel],
	}
}

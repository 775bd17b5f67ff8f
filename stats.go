package redisadapter

import (
	"sync/atomic"
	"time"
)

// Stats are the adapter's counters since New. Read them with Adapter.Stats.
type Stats struct {
	// Published counts messages Redis took from this node (broadcasts, requests, responses).
	Published uint64
	// PublishFailures counts queued messages Redis did not take (unreachable, refused, timed out).
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
	// ProbeFailures counts delivery probes that did not come back within Options.ProbeTimeout; each closed the node's connections to Redis, and its subscriptions were renewed on new ones (see Ping).
	ProbeFailures uint64
	// ProbeLag is the round trip of the last delivery probe (publish to read back), the largest over the namespaces.
	ProbeLag time.Duration
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
}

type counters struct {
	received, malformed, queueFull, slowSocket, resubscribes, outages, collisions, streamGaps, streamDuplicates, probeFailures atomic.Uint64
}

// Stats returns a snapshot of the counters. It is cheap and never blocks
// for long.
func (a *Adapter) Stats() Stats {
	c := &a.stats
	lag, lagMax := a.probeLag()
	return Stats{
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
		ProbeLagMax:      lagMax,
		IDCollisions:     c.collisions.Load(),
		StreamGaps:       c.streamGaps.Load(),
		StreamDuplicates: c.streamDuplicates.Load(),
		QueueDepth:       a.in.depth(),
		Sockets:          a.local.count(),
		Subscribed:       a.subs.isLive() && a.roomShardsDown() == 0,
	}
}

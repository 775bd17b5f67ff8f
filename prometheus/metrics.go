package redisadapterprom

// metric is one field of redisadapter.Stats (or EmitterStats, where it has
// the field) as a metric: a new field is one line here
// (TestEveryFieldIsExported fails without it). Metrics with a kind share
// their name, and so their help.
type metric struct {
	field string // the Stats field
	name  string // without namespace and subsystem
	kind  string // the value of the label "kind", or none
	help  string // what it means, and when to alert
}

const (
	connectionsHelp   = "Connections to Redis and Sentinel open now, by kind (pipelined: commands and subscriptions, 1 to 4 per Redis node; room_channels: one per Redis master with rooms of this node, sharded mode and classic RoomSubscriptions; stream_reader: one per stream read; sentinel). Their sum over the fleet counts against maxclients: alert when it nears it."
	subscriptionsHelp = "Subscriptions held now, by kind (channel, pattern, shard_channel, stream). Alert when one falls to 0 while redisadapter_subscribed is 1 for long (nothing to hear), or grows without bound (room channels of rooms never left)."
)

var table = []metric{
	{"Published", "published_total", "", "Messages Redis took from this node (broadcasts, requests, answers). A rate of 0 while sockets emit means nothing reaches Redis."},
	{"PublishFailures", "publish_failures_total", "", "Queued messages Redis did not take (unreachable, refused, timed out), or, in sharded mode, that reached no subscriber of the server that took them, or, shortly after this node's outage, broadcasts that reached fewer subscribers than before it, or broadcasts published while another node could not read (counted on its gap notice): the other nodes missed them (most of the latter three). Alert above zero."},
	{"Resent", "resent_total", "", "Stream entries sent again after a try that may not have reached Redis (streams mode); nothing was lost. Alert when it keeps rising: publishes fail in flight (dropped connections, failovers)."},
	{"Received", "received_total", "", "Messages read from Redis, own messages included. A rate of 0 on a fleet that broadcasts means this node hears nothing."},
	{"Malformed", "malformed_total", "", "Received messages dropped as undecodable, oversized or of unknown type. Alert above zero: something else writes to the adapter's channels, or versions do not match."},
	{"QueueFull", "queue_full_total", "", "Received messages dropped because a receive queue was full. Alert above zero: the node cannot keep up with the fleet (add CPU or nodes)."},
	{"SlowSocketDrops", "slow_socket_drops_total", "", "Events not delivered to a local socket whose queue was full. Alert when it rises fast: clients that do not read miss events."},
	{"RequestTimeouts", "request_timeouts_total", "", "Requests to other nodes that ended before every node answered. Alert when it rises: a node is overloaded, or gone without unsubscribing."},
	{"Resubscribes", "resubscribes_total", "", "Subscriptions renewed after a dropped connection or a failover. Alert when it rises: connections to Redis drop."},
	{"Outages", "outages_total", "", "Times a connection or subscription the adapter keeps was lost (each is logged). Alert when it rises: network, failovers, restarts."},
	{"ProbeFailures", "probe_failures_total", "", "Delivery checks that failed (a probe not back within Options.ProbeTimeout, a stream reader's XREAD unanswered, a Sentinel server that is not the master); each renewed the connections concerned. Alert when it rises: a Redis that hangs, a connection dropped silently, a subscriber cut off, a node on a demoted master."},
	{"ProbeLag", "probe_lag_seconds", "", "Round trip of the last delivery probe (published, then read back), the largest over the namespaces: the broadcast lag through Redis. Alert when it stays near Options.ProbeTimeout."},
	{"ProbeLagMedian", "probe_lag_median_seconds", "", "Median probe round trip of the last 64 probes of each namespace: the usual broadcast lag through Redis. Alert when it doubles from its usual level: Redis or the network is slowing down."},
	{"ProbeLagMax", "probe_lag_max_seconds", "", "Largest probe round trip of the last 64 probes of each namespace. Alert when it nears Options.ProbeTimeout: probes are about to fail."},
	{"StreamGaps", "stream_gaps_total", "", "Times this node found stream entries trimmed before it read them (streams mode): broadcasts lost. Alert above zero (raise MaxLen)."},
	{"StreamDuplicates", "stream_duplicates_total", "", "Second copies of stream entries a resend left, dropped (streams mode). Informational: it follows resent_total."},
	{"IDCollisions", "id_collisions_total", "", "Socket ids seen on two nodes, or not made by SessionIDGenerator. Alert above zero: a server without SessionIDGenerator."},
	{"QueueDepth", "queue_depth", "", "Received messages waiting to be handled now. Alert near Options.ReceiveQueue: about to drop."},
	{"Sockets", "sockets", "", "Sockets of this node the adapter tracks now. Alert when far from the node's connection count: sockets tracked that are not connected."},
	{"Subscribed", "subscribed", "", "1 while every subscription of this node is live, else 0. Alert when 0 for more than a few seconds: the node hears nothing from the fleet."},
	{"PipelinedConns", "connections", "pipelined", connectionsHelp},
	{"RoomConns", "connections", "room_channels", connectionsHelp},
	{"StreamReaderConns", "connections", "stream_reader", connectionsHelp},
	{"SentinelConns", "connections", "sentinel", connectionsHelp},
	{"SubscribedChannels", "subscriptions", "channel", subscriptionsHelp},
	{"SubscribedPatterns", "subscriptions", "pattern", subscriptionsHelp},
	{"SubscribedShardChannels", "subscriptions", "shard_channel", subscriptionsHelp},
	{"StreamsRead", "subscriptions", "stream", subscriptionsHelp},
}

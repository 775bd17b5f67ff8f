package redisadapter

// Channel and stream names, for the three protocols, built here and nowhere
// else from the key prefix, in the '#'-delimited layout of Node's adapters
// (neither the key nor a namespace holds a '#': see Options.validate):
//
//	classic   broadcasts     "<key>#<nsp>#", to one room "<key>#<nsp>#<room>#"
//	          requests       "<key>-request#<nsp>#"
//	          answers        "<key>-response#<nsp>#", to one node "<key>-response#<nsp>#<uid>#"
//	sharded   every message  "<key>#<nsp>#", to one room "<key>#<nsp>#<room>#",
//	          to one node    "<key>#<nsp>#<uid>#"
//	streams   as sharded (without rooms), and the stream Streams.Name, or
//	          "<Name>-<hashCode(nsp) % Count>" with Count > 1
//	probes of the room channels' connection to a master (sharded, classic
//	          with RoomSubscriptions): "<key>-probe#<uid>#<n>#", n picked
//	          so that the master serves the channel's slot
//
// A protocol builds its namespace's names once, when it is bound to the
// namespace (protocol.namespace).

import (
	"strconv"
	"strings"
)

// channels holds the channel names of one namespace.
type channels struct {
	broadcast string // "<key>#<nsp>#"
	request   string // "<key>-request#<nsp>#"
	response  string // "<key>-response#<nsp>#"
}

func newChannels(key, nsp string) channels {
	return channels{
		broadcast: key + "#" + nsp + "#",
		request:   key + "-request#" + nsp + "#",
		response:  key + "-response#" + nsp + "#",
	}
}

// pattern is what a classic node PSUBSCRIBEs to get every broadcast of the
// namespace.
func (c channels) pattern() string { return c.broadcast + "*" }

// room is the channel of one room's broadcasts.
func (c channels) room(room string) string { return c.broadcast + room + "#" }

// node is a sharded or streams node's own channel, where its answers come.
func (c channels) node(uid string) string { return c.broadcast + uid + "#" }

// responseTo is a classic node's own response channel.
func (c channels) responseTo(uid string) string { return c.response + uid + "#" }

// roomOf returns the room named by a broadcast channel ("" for the
// namespace-wide channel) and whether the channel belongs to c at all.
func (c channels) roomOf(channel string) (string, bool) {
	if !strings.HasPrefix(channel, c.broadcast) {
		return "", false
	}
	rest := channel[len(c.broadcast):]
	if rest == "" {
		return "", true
	}
	if !strings.HasSuffix(rest, "#") {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// streamName is the stream of namespace nsp (Node's computeStreamName).
func streamName(name string, count int, nsp string) string {
	if count <= 1 {
		return name
	}
	return name + "-" + strconv.Itoa(int(hashCode(nsp))%count)
}

// hashCode is Node's hashCode: hash*31 + each UTF-16 code unit, wrapped to
// a signed 32-bit integer. Go's % keeps the sign as JavaScript's does, so a
// negative hash names a stream like "socket.io--1", as in Node.
func hashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 { // a surrogate pair in UTF-16
			r -= 0x10000
			h = h*31 + int32(0xD800+(r>>10))
			h = h*31 + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = h*31 + r
	}
	return h
}

// shardProbeChannel is the n-th candidate for the probe channel of node
// uid's connection to one master.
func shardProbeChannel(key, uid string, n int) string {
	return key + "-probe#" + uid + "#" + strconv.Itoa(n) + "#"
}

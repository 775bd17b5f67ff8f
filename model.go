package redisadapter

// The neutral model the core speaks, whatever the protocol: request types,
// selectors, broadcasts, requests and answers. Protocols turn them into
// channels and bytes and back (protocol.go).

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// requestType is the "type" field of a request or response, numbered as in
// Node's RequestType enum.
type requestType int

const (
	typeSockets              requestType = 0
	typeAllRooms             requestType = 1
	typeRemoteJoin           requestType = 2
	typeRemoteLeave          requestType = 3
	typeRemoteDisconnect     requestType = 4
	typeRemoteFetch          requestType = 5
	typeServerSideEmit       requestType = 6
	typeBroadcast            requestType = 7
	typeBroadcastClientCount requestType = 8
	typeBroadcastAck         requestType = 9
	// typeGap is ours: a node tells the others the span it could not read
	// (gaps.go). Node's adapters ignore a type they do not know (the
	// default branch of redis-adapter's onrequest and of ClusterAdapter's
	// onMessage); this one is far from both enums.
	typeGap requestType = 1000
)

func (t requestType) String() string {
	switch t {
	case typeSockets:
		return "sockets"
	case typeAllRooms:
		return "allRooms"
	case typeRemoteJoin:
		return "socketsJoin"
	case typeRemoteLeave:
		return "socketsLeave"
	case typeRemoteDisconnect:
		return "disconnectSockets"
	case typeRemoteFetch:
		return "fetchSockets"
	case typeServerSideEmit:
		return "serverSideEmit"
	case typeBroadcast:
		return "broadcastWithAck"
	case typeGap:
		return "gap"
	}
	return fmt.Sprintf("type %d", int(t))
}

// Packet types of the socket.io protocol that a broadcast may carry.
const (
	packetEvent       = 2
	packetBinaryEvent = 5
)

// selector chooses sockets: those in any of Rooms (all when empty) and in
// none of Except: the "opts" of Node's broadcasts and requests.
type selector struct {
	Rooms  []string
	Except []string
}

// wire returns s with nil slices replaced by empty ones: Node reads them with
// new Set(...) and the spread operator, and the capture shows [] not null.
func (s selector) wire() selector {
	if s.Rooms == nil {
		s.Rooms = []string{}
	}
	if s.Except == nil {
		s.Except = []string{}
	}
	return s
}

// broadcastFrame is a decoded broadcast.
type broadcastFrame struct {
	uid   string
	nsp   string
	event string
	args  []any
	sel   selector
	// rawArgs holds a classic frame's arguments still in msgpack (argc of
	// them), for arguments to decode once a local socket is to get them:
	// a node without one never pays for it.
	rawArgs string
	argc    int
}

// arguments returns the frame's arguments, decoding them if they are raw.
func (f broadcastFrame) arguments() ([]any, error) {
	if f.rawArgs == "" {
		return f.args, nil
	}
	dec := newDecoder(f.rawArgs)
	defer dec.release()
	args := make([]any, 0, min(f.argc, 64))
	for range f.argc {
		v, err := dec.value(0)
		if err != nil {
			return nil, malformed("event %q argument: %v", f.event, err)
		}
		args = append(args, v)
	}
	return args, nil
}

var errMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

// request is a request between nodes, as the core sends and handles it;
// each protocol encodes it in its own form (classic.go, sharded.go,
// streams.go) and decodes that form back into it.
type request struct {
	uid string
	id  string // "" for a request that wants no answer (join, leave, disconnect, an emitter's server-side emit)
	typ requestType
	// nsp is the namespace a sharded or streams message names; "" in
	// classic ones, whose channel names it.
	nsp string

	sel   selector // typeRemoteJoin, Leave, Disconnect and Fetch: the sockets acted on
	rooms []string // typeRemoteJoin and Leave: the rooms; typeSockets: the rooms counted (none: all)
	close bool     // typeRemoteDisconnect: close the underlying connection
	// legacy marks the per-socket form of join, leave and disconnect that
	// Node's older adapters send: sel names one socket id, rooms one room,
	// and the requester waits for an answer from the node holding it.
	legacy bool

	// typeServerSideEmit: the event and its arguments, as JSON.
	event string
	args  []json.RawMessage

	// typeBroadcast (a broadcast with acknowledgements): the broadcast, and
	// the timeout its sender waits for the acknowledgements.
	frame      broadcastFrame
	ackTimeout time.Duration

	// typeGap: the span the sender could not read, as durations before it
	// sent the notice, and whether on its room channels' connection.
	gapSince, gapUntil time.Duration
	gapRooms           bool
}

// answer is an answer to a request: what the core sends back, and what a
// requester gets from any node, Go or Node.js, each protocol encoding and
// decoding it in its own form. The fields set are those of the request's
// type.
type answer struct {
	id  string // the request's
	uid string // the answering node, when its protocol says (Go nodes add it to classic answers)
	// typ says, for an answer to a broadcast with acknowledgements, which
	// of its two kinds it is: typeBroadcastClientCount or typeBroadcastAck.
	typ requestType

	ids         []string       // typeSockets: the selected sockets' ids
	rooms       []string       // typeAllRooms
	sockets     []RemoteSocket // typeRemoteFetch
	clientCount int            // typeBroadcastClientCount: how many local clients got the broadcast
	// ack is, as JSON, a server's answer to typeServerSideEmit or a client's
	// acknowledgement (typeBroadcastAck); decoded answers hold null for none.
	ack json.RawMessage
}

package main

// The fleet view: a post's readers on each node, cluster-wide, from
// FetchSockets and each socket's data, which names its node.

import (
	"context"
	"encoding/json"

	socketio "github.com/googollee/go-socket.io"
)

// socketData is every socket's data, as FetchSockets reports it: connect
// (handlers.go) sets it.
type socketData struct {
	Node string `json:"node"`
}

func (b *blog) fleet(s socketio.Conn, v any) any {
	id, e := admit(b, s, v, postID)
	if e != "" {
		return e
	}
	perNode := b.fleetOf(context.Background(), id)
	return map[string]any{"post": id, "node": b.node, "readers": perNode}
}

// fleetOf returns the post's readers per node, cluster-wide, from FetchSockets;
// when a node does not answer in time, the others'.
func (b *blog) fleetOf(ctx context.Context, id string) map[string]int {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	sockets, err := b.a.To(postRoom(id)).FetchSockets(ctx)
	if err != nil {
		b.log.Warn("reader list incomplete", "post", id, "err", err)
	}
	perNode := make(map[string]int)
	for _, s := range sockets {
		var d socketData
		_ = json.Unmarshal(s.Data, &d) // anything else than {"node": ...} counts as "other"
		if d.Node == "" {
			d.Node = "other"
		}
		perNode[d.Node]++
	}
	return perNode
}

// pushFleet tells the post's readers how many they are on each node; it
// runs on b.fleetRefresh, off the handlers.
func (b *blog) pushFleet(id string) {
	perNode := b.fleetOf(b.ctx, id)
	ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
	defer cancel()
	if err := b.a.To(postRoom(id)).Emit(ctx, "fleet:update", map[string]any{"post": id, "readers": perNode}); err != nil {
		b.log.Warn("fleet update not sent to other nodes", "post", id, "err", err)
	}
}

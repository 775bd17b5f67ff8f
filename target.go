package redisadapter

// What BroadcastOperator and EmitterOperator share: a namespace, a
// selection of its sockets, and the messages that make every node act on
// them.

import (
	"context"
	"slices"
)

// target is a namespace and a selection of its sockets.
type target struct {
	pub   *publisher
	proto nsProtocol // bound to the namespace
	sel   selector
	sent  *gapLogs // count what Redis took, for gap notices (Adapter only: gaps.go)
	local bool     // only this node's sockets: nothing is published (Adapter only)
	err   error    // the namespace is not served (Adapter) or not valid (Emitter); every operation returns it
}

func (t target) to(rooms []string) target {
	t.sel.Rooms = appendNew(t.sel.Rooms, rooms)
	return t
}

func (t target) except(rooms []string) target {
	t.sel.Except = appendNew(t.sel.Except, rooms)
	return t
}

// appendNew returns a copy of list with the items not already in it.
func appendNew(list, items []string) []string {
	out := slices.Clip(list)
	for _, it := range items {
		if !slices.Contains(out, it) {
			out = append(out, it)
		}
	}
	return out
}

// emit broadcasts event with args to the selected sockets of every node.
// deliver, when not nil, gives the event to this node's own sockets once
// it is encoded, whether publishing then succeeds or not; with local it is
// all emit does.
func (t target) emit(ctx context.Context, event string, args []any, deliver func()) error {
	if t.local {
		deliver()
		return nil
	}
	m, err := t.proto.encodeBroadcast(t.sel, event, args)
	if err != nil {
		return err
	}
	if deliver != nil {
		deliver()
	}
	m.sent = t.sent.of(m.readers)
	return t.pub.publish(ctx, t.proto, m)
}

// remote makes the selected sockets of every node join rooms
// (typeRemoteJoin), leave them, or disconnect. apply, when not nil, does it
// to this node's own sockets first; with local it is all remote does. A
// join or leave of no rooms does nothing.
func (t target) remote(ctx context.Context, typ requestType, rooms []string, closeConn bool, apply func()) error {
	if typ != typeRemoteDisconnect && len(rooms) == 0 {
		return nil
	}
	if apply != nil {
		apply()
	}
	if t.local {
		return nil
	}
	m, err := t.pub.encodeRequest(t.proto, request{uid: t.pub.uid, typ: typ, sel: t.sel, rooms: rooms, close: closeConn})
	if err != nil {
		return err
	}
	m.sent = t.sent.of(m.readers)
	return t.pub.publish(ctx, t.proto, m)
}

// serverSideEmitRequest is the request carrying event and args to the
// namespace's servers.
func serverSideEmitRequest(event string, args []any) (request, error) {
	data, err := jsonArgs(event, args)
	if err != nil {
		return request{}, err
	}
	return request{typ: typeServerSideEmit, event: event, args: data}, nil
}

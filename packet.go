package redisadapter

// Socket.io packets as Node's adapters carry them: a broadcast's packet
// {type, data: [event, ...args], nsp} and opts {rooms, except, flags} in
// msgpack (classic broadcasts, streams entries holding binary), and the
// JSON forms of the sharded protocols and of server-side emits.

import (
	"encoding/json"
	"errors"

	"github.com/vmihailenco/msgpack/v5"
)

// encodePacket writes the packet {type, data: [event, ...args], nsp} of
// a broadcast.
func encodePacket(enc *msgpack.Encoder, nsp, event string, args []any) error {
	return errors.Join(
		enc.EncodeMapLen(3),
		enc.EncodeString("type"), enc.EncodeInt(packetEvent),
		enc.EncodeString("data"), encodeEventData(enc, event, args),
		enc.EncodeString("nsp"), enc.EncodeString(nsp),
	)
}

// encodeOpts writes the opts {rooms, except, flags} of a broadcast; flags
// holds Node's timeout flag (milliseconds) when timeoutMS is set, as a
// broadcast with acknowledgements carries it, and is empty otherwise.
func encodeOpts(enc *msgpack.Encoder, sel selector, timeoutMS int64) error {
	sel = sel.wire()
	err := errors.Join(
		enc.EncodeMapLen(3),
		enc.EncodeString("rooms"), encodeStrings(enc, sel.Rooms),
		enc.EncodeString("except"), encodeStrings(enc, sel.Except),
		enc.EncodeString("flags"),
	)
	if timeoutMS <= 0 {
		return errors.Join(err, enc.EncodeMapLen(0))
	}
	return errors.Join(err, enc.EncodeMapLen(1), enc.EncodeString("timeout"), enc.EncodeInt(timeoutMS))
}

// decodePacket reads a socket.io packet map {type, data, nsp} into f and
// returns its type. With withNsp the packet's nsp ("/" when missing) is
// the frame's; without, it is skipped, whatever it holds (a stream entry
// names its namespace itself).
func decodePacket(dec *decoder, f *broadcastFrame, withNsp bool) (int, error) {
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return 0, malformed("packet is not a map")
	}
	typ, haveData := -1, false
	if withNsp {
		f.nsp = "/"
	}
	for range n {
		key, err := dec.str()
		if err != nil {
			return 0, malformed("packet key: %v", err)
		}
		switch key {
		case "type":
			if typ, err = dec.integer(); err != nil {
				return 0, malformed("packet type: %v", err)
			}
		case "nsp":
			if !withNsp {
				err = dec.skip(0)
			} else {
				f.nsp, err = dec.str()
			}
			if err != nil {
				return 0, malformed("packet nsp: %v", err)
			}
		case "data":
			if err = decodeEventData(dec, f); err != nil {
				return 0, err
			}
			haveData = true
		default:
			if err := dec.skip(0); err != nil {
				return 0, malformed("packet field %q: %v", key, err)
			}
		}
	}
	if !haveData {
		return 0, malformed("packet without data")
	}
	return typ, nil
}

// decodeEventData reads [event, ...args] into f, leaving the arguments raw
// (checked, not decoded).
func decodeEventData(dec *decoder, f *broadcastFrame) error {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 1 {
		return malformed("event data is not a non-empty array")
	}
	if f.event, err = dec.str(); err != nil {
		return malformed("event name: %v", err)
	}
	start := dec.offset()
	for range n - 1 {
		if err := dec.skip(0); err != nil {
			return malformed("event %q argument: %v", f.event, err)
		}
	}
	f.rawArgs, f.argc = dec.s[start:dec.offset()], n-1
	return nil
}

// decodeSelector reads {rooms, except, flags}; flags are skipped (local is
// never published, the others do not change what a receiver does).
func decodeSelector(dec *decoder) (selector, error) {
	var s selector
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return s, malformed("broadcast opts is not a map")
	}
	for range n {
		key, err := dec.str()
		if err != nil {
			return s, malformed("opts key: %v", err)
		}
		switch key {
		case "rooms":
			s.Rooms, err = decodeStrings(dec)
		case "except":
			s.Except, err = decodeStrings(dec)
		default:
			err = dec.skip(0)
		}
		if err != nil {
			return s, malformed("opts %q: %v", key, err)
		}
	}
	return s, nil
}

func decodeStrings(dec *decoder) ([]string, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]string, 0, min(n, 64))
	for range n {
		s, err := dec.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// encodeEventData writes [event, ...args].
func encodeEventData(enc *msgpack.Encoder, event string, args []any) error {
	if err := enc.EncodeArrayLen(1 + len(args)); err != nil {
		return err
	}
	if err := enc.EncodeString(event); err != nil {
		return err
	}
	for _, a := range args {
		if err := enc.Encode(a); err != nil {
			return err
		}
	}
	return nil
}

// encodeEventArgs is a server-side emit's [event, ...args], as JSON.
func encodeEventArgs(event string, args []json.RawMessage) (json.RawMessage, error) {
	data := make([]any, 0, 1+len(args))
	data = append(data, event)
	for _, a := range args {
		data = append(data, a)
	}
	return json.Marshal(data)
}

// decodeEventArgs reads a server-side emit's [event, ...args].
func decodeEventArgs(raw json.RawMessage) (string, []json.RawMessage, error) {
	var data []json.RawMessage
	var event string
	if json.Unmarshal(raw, &data) != nil || len(data) == 0 || json.Unmarshal(data[0], &event) != nil {
		return "", nil, malformed("server-side emit data is not [event, ...args]")
	}
	return event, data[1:], nil
}

// jsonArgs encodes each argument as JSON, so that an argument JSON cannot
// encode fails before anything is sent.
func jsonArgs(event string, args []any) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, errorf("serverSideEmit %q: %w", event, err)
		}
		out[i] = b
	}
	return out, nil
}

package redisadapter

// msgpack, as the adapters write and read it: pooled encoders that encode Go
// structs by their json tags, a decoder of untrusted input that checks every
// declared length and bounds nesting, and jsonToMsgpack for the messages
// Node sends as msgpack of what would otherwise be JSON.

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// newEncoder returns a msgpack encoder that writes to buf and encodes Go
// structs by their json tags, so a value reaches a client on another node
// with the same field names it would have if emitted locally.
func newEncoder(buf *bytes.Buffer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(buf)
	enc.SetCustomStructTag("json")
	enc.UseCompactInts(true)
	return enc
}

// encoderBuffer is an encoder and the buffer it writes to, reused across
// broadcasts (sync.Pool): a frame would otherwise cost an encoder and the
// buffer's growth in allocations.
type encoderBuffer struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := new(encoderBuffer)
	e.enc = newEncoder(&e.buf)
	return e
}}

// maxPooledBuffer keeps one huge frame from pinning its buffer in the pool.
const maxPooledBuffer = 64 << 10

// encodeStrings writes ss as Encode would (nil as nil), without its
// reflection: every broadcast carries two of them.
func encodeStrings(enc *msgpack.Encoder, ss []string) error {
	if ss == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(ss)); err != nil {
		return err
	}
	for _, s := range ss {
		if err := enc.EncodeString(s); err != nil {
			return err
		}
	}
	return nil
}

// decoder reads msgpack from untrusted input. Arrays and maps go through
// value, which checks each declared length against the bytes left and
// bounds nesting: the library's own generic decoding preallocates whatever
// length a header claims (one 13-byte frame asked for 43 GB) and recurses
// without limit.
type decoder struct {
	*msgpack.Decoder
	s string
	r *strings.Reader // unbuffered (a strings.Reader is a ByteScanner): Len is what is left
}

// offset is how far into s the decoder has read.
func (d *decoder) offset() int { return len(d.s) - d.r.Len() }

// maxDepth bounds the nesting of arrays and maps in an argument.
const maxDepth = 32

// decoders are reused (sync.Pool): a message would otherwise cost a reader,
// a library decoder and its buffer in allocations.
var decoders = sync.Pool{New: func() any {
	r := strings.NewReader("")
	dec := msgpack.NewDecoder(r)
	dec.UseLooseInterfaceDecoding(true)
	return &decoder{Decoder: dec, r: r}
}}

// newDecoder returns a decoder of s; release it when done.
func newDecoder(s string) *decoder {
	d := decoders.Get().(*decoder)
	d.s = s
	d.r.Reset(s)
	d.ResetReader(d.r) // keeps the loose-interface flag
	return d
}

// release returns d to the pool. Nothing d decoded refers to it: values are
// copies or substrings of the message (str).
func (d *decoder) release() {
	d.s = ""
	d.r.Reset("")
	decoders.Put(d)
}

// str reads a string (or nil, as "") as a substring of the message, without
// copying: the head of a frame is read on every message, and the message
// is bounded by MaxMessageSize.
func (d *decoder) str() (string, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		return "", err
	}
	n := 0
	switch {
	case c == msgpcode.Nil:
		return "", nil
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8:
		n, err = d.length(1)
	case c == msgpcode.Str16:
		n, err = d.length(2)
	case c == msgpcode.Str32:
		n, err = d.length(4)
	default:
		return "", malformed("code 0x%x is not a string", c)
	}
	if err != nil {
		return "", err
	}
	if n > d.r.Len() {
		return "", malformed("string of %d bytes in %d", n, d.r.Len())
	}
	start := d.offset()
	_, err = d.r.Seek(int64(n), io.SeekCurrent)
	return d.s[start : start+n], err
}

// integer reads an integer, or a float that holds one: to JavaScript, and
// so to Node's adapters, 2.0 is 2.
func (d *decoder) integer() (int, error) {
	if c, err := d.PeekCode(); err != nil || c != msgpcode.Float && c != msgpcode.Double {
		return d.DecodeInt()
	}
	f, err := d.DecodeFloat64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return 0, malformed("%v is not an integer", f)
	}
	return int(f), nil
}

// value decodes any value: numbers as int64, uint64 or float64, maps as
// map[string]any, arrays as []any, strings (and map keys) as substrings of
// the message, as str reads them: what value decodes is handed on and
// dropped with the message (re-encoded for the sockets, or as an ack).
func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, malformed("nested deeper than %d", maxDepth)
	}
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil || n > d.r.Len() {
			return nil, malformed("array of %d elements in %d bytes", n, d.r.Len())
		}
		out := make([]any, 0, max(n, 0))
		for range n {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil || n > d.r.Len()/2 {
			return nil, malformed("map of %d entries in %d bytes", n, d.r.Len())
		}
		out := make(map[string]any, max(n, 0))
		for range n {
			k, err := d.str()
			if err != nil {
				return nil, malformed("map key: %v", err)
			}
			if out[k], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32:
		return d.str()
	default:
		// skip checks a string's, binary's or extension's length against
		// the bytes left; the library would first grow its buffer, which a
		// pooled decoder keeps, toward whatever the header claims.
		start := d.offset()
		if err := d.skip(depth); err != nil {
			return nil, err
		}
		if _, err := d.r.Seek(int64(start), io.SeekStart); err != nil {
			return nil, err
		}
		return d.DecodeInterfaceLoose()
	}
}

// skip discards one value without decoding it, with the checks of value:
// every declared length is checked against the bytes left before it is
// skipped (the library's Skip allocates whatever a string header claims).
func (d *decoder) skip(depth int) error {
	if depth > maxDepth {
		return malformed("nested deeper than %d", maxDepth)
	}
	c, err := d.r.ReadByte()
	if err != nil {
		return err
	}
	n := 0 // bytes after the header
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
	case msgpcode.IsFixedString(c):
		n = int(c & msgpcode.FixedStrMask)
	case msgpcode.IsFixedArray(c):
		return d.skipElems(int(c&msgpcode.FixedArrayMask), depth)
	case msgpcode.IsFixedMap(c):
		return d.skipElems(2*int(c&msgpcode.FixedMapMask), depth)
	case c == msgpcode.Uint8, c == msgpcode.Int8:
		n = 1
	case c == msgpcode.Uint16, c == msgpcode.Int16:
		n = 2
	case c == msgpcode.Uint32, c == msgpcode.Int32, c == msgpcode.Float:
		n = 4
	case c == msgpcode.Uint64, c == msgpcode.Int64, c == msgpcode.Double:
		n = 8
	case c == msgpcode.FixExt1, c == msgpcode.FixExt2, c == msgpcode.FixExt4, c == msgpcode.FixExt8, c == msgpcode.FixExt16:
		n = 1 + 1<<(c-msgpcode.FixExt1) // type byte, then 1 to 16 bytes
	case c == msgpcode.Str8, c == msgpcode.Bin8, c == msgpcode.Ext8:
		n, err = d.length(1)
	case c == msgpcode.Str16, c == msgpcode.Bin16, c == msgpcode.Ext16:
		n, err = d.length(2)
	case c == msgpcode.Str32, c == msgpcode.Bin32, c == msgpcode.Ext32:
		n, err = d.length(4)
	case c == msgpcode.Array16, c == msgpcode.Map16, c == msgpcode.Array32, c == msgpcode.Map32:
		width := 2
		if c == msgpcode.Array32 || c == msgpcode.Map32 {
			width = 4
		}
		if n, err = d.length(width); err != nil {
			return err
		}
		if c == msgpcode.Map16 || c == msgpcode.Map32 {
			n *= 2
		}
		return d.skipElems(n, depth)
	default:
		return malformed("unknown msgpack code 0x%x", c)
	}
	if err != nil {
		return err
	}
	if c == msgpcode.Ext8 || c == msgpcode.Ext16 || c == msgpcode.Ext32 {
		n++ // the extension's type byte
	}
	if n > d.r.Len() {
		return malformed("value of %d bytes in %d", n, d.r.Len())
	}
	_, err = d.r.Seek(int64(n), io.SeekCurrent)
	return err
}

// skipElems skips n values nested one level below depth.
func (d *decoder) skipElems(n, depth int) error {
	if n < 0 || n > d.r.Len() { // negative: overflowed on a 32-bit int
		return malformed("%d elements in %d bytes", n, d.r.Len())
	}
	for range n {
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// length reads a big-endian length of width bytes.
func (d *decoder) length(width int) (int, error) {
	n := 0
	for range width {
		b, err := d.r.ReadByte()
		if err != nil {
			return 0, err
		}
		n = n<<8 | int(b)
	}
	if n < 0 { // a 32-bit int overflowed
		return 0, malformed("length over %d", math.MaxInt32)
	}
	return n, nil
}

// jsonToMsgpack re-encodes a JSON document as msgpack, keeping the order of
// object keys (Node's encoder writes them in insertion order) and integers
// as integers.
func jsonToMsgpack(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	if err := transcode(dec, enc, 0); err != nil {
		return nil, errorf("msgpack: %w", err)
	}
	return buf.Bytes(), nil
}

// jsonNode is a parsed JSON value whose objects keep their key order.
type jsonNode struct {
	scalar any // json.Number, string, bool or nil
	keys   []string
	items  []jsonNode // an object's values or an array's elements
	kind   byte       // 0 scalar, '{' object, '[' array
}

func transcode(dec *json.Decoder, enc *msgpack.Encoder, depth int) error {
	n, err := parseJSON(dec, depth)
	if err != nil {
		return err
	}
	return n.encode(enc)
}

func parseJSON(dec *json.Decoder, depth int) (jsonNode, error) {
	if depth > maxDepth {
		return jsonNode{}, malformed("nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonNode{}, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return jsonNode{scalar: tok}, nil
	}
	n := jsonNode{kind: byte(d)}
	for dec.More() {
		if n.kind == '{' {
			k, err := dec.Token()
			if err != nil {
				return n, err
			}
			key, _ := k.(string)
			n.keys = append(n.keys, key)
		}
		item, err := parseJSON(dec, depth+1)
		if err != nil {
			return n, err
		}
		n.items = append(n.items, item)
	}
	_, err = dec.Token() // the closing delimiter
	return n, err
}

func (n jsonNode) encode(enc *msgpack.Encoder) error {
	switch n.kind {
	case '{':
		if err := enc.EncodeMapLen(len(n.items)); err != nil {
			return err
		}
		for i, item := range n.items {
			if err := enc.EncodeString(n.keys[i]); err != nil {
				return err
			}
			if err := item.encode(enc); err != nil {
				return err
			}
		}
		return nil
	case '[':
		if err := enc.EncodeArrayLen(len(n.items)); err != nil {
			return err
		}
		for _, item := range n.items {
			if err := item.encode(enc); err != nil {
				return err
			}
		}
		return nil
	}
	if num, ok := n.scalar.(json.Number); ok {
		if i, err := num.Int64(); err == nil {
			return enc.EncodeInt(i)
		}
		f, err := num.Float64()
		if err != nil {
			return err
		}
		return enc.EncodeFloat64(f)
	}
	return enc.Encode(n.scalar)
}

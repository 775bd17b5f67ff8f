// Package siotest is a minimal socket.io client for tests: protocol 4 over
// engine.io 3, websocket only, the protocol go-socket.io v1.7.0 serves (it
// ships no client).
//
// It speaks the wire format directly on a gorilla websocket rather than
// through go-socket.io's parser, which allocates a 4 KiB reader and runs a
// reflective JSON decoder for every packet: the benchmarks run thousands of
// these clients in the process they measure, and the clients must cost
// little beside the servers.
package siotest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Event is an event the client received.
type Event struct {
	Namespace string
	Name      string
	Args      []json.RawMessage
}

// Client is one socket.io connection.
type Client struct {
	ws *websocket.Conn
	id string

	Events  chan Event // every event received, in order
	done    chan struct{}
	closing chan struct{}
	once    sync.Once

	mu     sync.Mutex // one writer at a time; guards nextID, acks and acker
	nextID uint64
	acks   map[uint64]chan []json.RawMessage
	acker  func(Event) []any
}

// AckWith makes the client answer every event that asks for an
// acknowledgement with what f returns for it (no answer when f returns
// nil, or without AckWith).
func (c *Client) AckWith(f func(Event) []any) {
	c.mu.Lock()
	c.acker = f
	c.mu.Unlock()
}

// ack answers the event e that asked for acknowledgement id, if an acker
// is set.
func (c *Client) ack(e Event, id uint64) error {
	c.mu.Lock()
	f := c.acker
	c.mu.Unlock()
	if f == nil {
		return nil
	}
	args := f(e)
	if args == nil {
		return nil
	}
	data, err := json.Marshal(args)
	if err != nil {
		return err
	}
	packet := []byte("43")
	if e.Namespace != "" && e.Namespace != "/" {
		packet = append(append(packet, e.Namespace...), ',')
	}
	return c.send(append(strconv.AppendUint(packet, id, 10), data...))
}

// Dial connects to a go-socket.io server at base (http://host:port) and
// waits for the CONNECT packet of the root namespace.
func Dial(base string) (*Client, error) {
	u := "ws" + strings.TrimPrefix(strings.TrimSuffix(base, "/"), "http") + "/socket.io/?EIO=3&transport=websocket"
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", base, err)
	}
	c := &Client{
		ws:      ws,
		Events:  make(chan Event, 1024),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		acks:    make(map[uint64]chan []json.RawMessage),
	}
	interval, err := c.handshake()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("handshake with %s: %w", base, err)
	}
	go c.read()
	go c.ping(interval)
	return c, nil
}

// handshake reads the engine.io OPEN packet and the socket.io CONNECT of
// the root namespace, and returns the ping interval the server asked for.
func (c *Client) handshake() (time.Duration, error) {
	var open struct {
		SID          string `json:"sid"`
		PingInterval int64  `json:"pingInterval"`
	}
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		switch {
		case len(msg) > 0 && msg[0] == '0':
			if err := json.Unmarshal(msg[1:], &open); err != nil {
				return 0, fmt.Errorf("open packet %q: %w", msg, err)
			}
			c.id = open.SID
		case string(msg) == "40":
			if c.id == "" {
				return 0, errors.New("CONNECT before OPEN")
			}
			return time.Duration(open.PingInterval) * time.Millisecond, nil
		}
	}
}

// ID is the engine.io session id, which go-socket.io uses as the socket id.
func (c *Client) ID() string { return c.id }

// Join connects the client to namespace nsp as well.
func (c *Client) Join(nsp string) error { return c.send([]byte("40" + nsp)) }

// Emit sends an event to the root namespace without waiting for an ack.
func (c *Client) Emit(event string, args ...any) error {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return err
	}
	return c.send(append([]byte("42"), data...))
}

// Call sends an event to the root namespace and waits for its ack.
func (c *Client) Call(timeout time.Duration, event string, args ...any) ([]json.RawMessage, error) {
	data, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return nil, err
	}
	ch := make(chan []json.RawMessage, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.acks[id] = ch
	c.mu.Unlock()
	if err := c.send(append(strconv.AppendUint([]byte("42"), id, 10), data...)); err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a, nil
	case <-c.done:
		return nil, errors.New("connection closed")
	case <-time.After(timeout):
		return nil, fmt.Errorf("no ack to %q within %v", event, timeout)
	}
}

func (c *Client) send(packet []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, packet)
}

// SendRaw sends packet as one engine.io message, as it is: for tests of
// malformed input.
func (c *Client) SendRaw(packet string) error { return c.send([]byte(packet)) }

// Closed is closed when the connection ends.
func (c *Client) Closed() <-chan struct{} { return c.done }

// Close closes the connection. Events not yet taken from Events are
// dropped.
func (c *Client) Close() error {
	c.once.Do(func() { close(c.closing) })
	return c.ws.Close()
}

// ping sends engine.io pings (a 3.x client's job) until the connection
// ends, so the server's ping timeout never fires.
func (c *Client) ping(interval time.Duration) {
	if interval <= 0 {
		interval = 25 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if c.send([]byte("2")) != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *Client) read() {
	defer close(c.done)
	defer c.ws.Close()
	var size int64 = 512 // the last message's length: the next one is often as long
	for {
		typ, r, err := c.ws.NextReader()
		if err != nil {
			return
		}
		// One allocation of the right size where ReadMessage grows a
		// slice from 512 bytes; the message is not reused, since events
		// hold slices of it.
		buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		msg := buf.Bytes()
		size = int64(len(msg))
		// Binary frames are attachments of binary events, which these
		// tests do not send: their placeholders stay in the arguments.
		if typ != websocket.TextMessage || len(msg) < 2 || msg[0] != '4' {
			continue // engine.io pong, noop, or an attachment
		}
		p, err := parsePacket(msg[1:])
		if err != nil {
			return
		}
		switch p.typ {
		case '2', '5': // EVENT, BINARY_EVENT
			all, err := splitArray(p.data)
			var name string
			if err != nil || len(all) == 0 || json.Unmarshal(all[0], &name) != nil {
				return
			}
			e := Event{Namespace: p.nsp, Name: name, Args: all[1:]}
			if p.id != 0 && c.ack(e, p.id) != nil {
				return
			}
			select {
			case c.Events <- e:
			case <-c.closing:
				return
			}
		case '3', '6': // ACK, BINARY_ACK
			args, err := splitArray(p.data)
			if err != nil {
				return
			}
			c.mu.Lock()
			ch := c.acks[p.id]
			delete(c.acks, p.id)
			c.mu.Unlock()
			if ch != nil {
				ch <- args
			}
		case '1': // DISCONNECT
			return
		}
	}
}

// packet is a socket.io 2.x packet: type[attachments-][/nsp,][id][json].
type packet struct {
	typ  byte
	nsp  string
	id   uint64
	data []byte
}

func parsePacket(b []byte) (packet, error) {
	p := packet{typ: b[0]}
	b = b[1:]
	if p.typ == '5' || p.typ == '6' {
		i := bytes.IndexByte(b, '-')
		if i < 0 {
			return p, fmt.Errorf("binary packet without attachment count: %q", b)
		}
		b = b[i+1:]
	}
	if len(b) > 0 && b[0] == '/' {
		i := bytes.IndexByte(b, ',')
		if i < 0 {
			i = len(b)
		}
		p.nsp = string(b[:i])
		b = b[min(i+1, len(b)):]
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i > 0 {
		id, err := strconv.ParseUint(string(b[:i]), 10, 64)
		if err != nil {
			return p, err
		}
		p.id = id
	}
	p.data = b[i:]
	return p, nil
}

// splitArray returns the elements of the JSON array b without decoding
// them: the benchmarks only look at event names, and a full decode of every
// argument of every event made the clients a large share of the CPU they
// measure. Elements are not validated; a test that reads one decodes it.
func splitArray(b []byte) ([]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, fmt.Errorf("not a JSON array: %q", b)
	}
	var out []json.RawMessage
	depth, start, inString := 0, 1, false
	for i := 1; i < len(b)-1; i++ {
		if inString {
			// Jump to the string's next quote or backslash: the benchmarks'
			// clients spend most of their time in long strings.
			j := bytes.IndexAny(b[i:len(b)-1], `"\`)
			if j < 0 {
				break // unterminated: reported below
			}
			i += j
			if b[i] == '\\' {
				i++ // the escaped byte
			} else {
				inString = false
			}
			continue
		}
		switch c := b[i]; {
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == ',' && depth == 0:
			out = append(out, bytes.TrimSpace(b[start:i]))
			start = i + 1
		}
	}
	if last := bytes.TrimSpace(b[start : len(b)-1]); len(last) > 0 || len(out) > 0 {
		out = append(out, last)
	}
	if inString || depth != 0 {
		return nil, fmt.Errorf("unbalanced JSON array: %q", b)
	}
	return out, nil
}

// Next returns the next event named name within timeout, skipping others.
func (c *Client) Next(name string, timeout time.Duration) (Event, error) {
	deadline := time.After(timeout)
	for {
		select {
		case e := <-c.Events:
			if e.Name == name {
				return e, nil
			}
		case <-deadline:
			return Event{}, fmt.Errorf("no %q event within %v", name, timeout)
		}
	}
}

// NextAny returns the next event, whatever its name, within timeout. Tests
// check that an event did not arrive by sending a later one that must, and
// checking it comes first.
func (c *Client) NextAny(timeout time.Duration) (Event, error) {
	select {
	case e := <-c.Events:
		return e, nil
	case <-time.After(timeout):
		return Event{}, fmt.Errorf("no event within %v", timeout)
	}
}

// Package siotest is a minimal socket.io client (protocol 4, engine.io 3,
// websocket) for tests, built from go-socket.io's own engineio dialer and
// parser: v1.7.0 ships no client.
package siotest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/googollee/go-socket.io/engineio"
	"github.com/googollee/go-socket.io/engineio/transport"
	"github.com/googollee/go-socket.io/engineio/transport/websocket"
	"github.com/googollee/go-socket.io/parser"
)

// Event is an event the client received.
type Event struct {
	Namespace string
	Name      string
	Args      []json.RawMessage
}

// Client is one socket.io connection.
type Client struct {
	conn engineio.Conn
	enc  *parser.Encoder
	dec  *parser.Decoder

	Events chan Event // every event received, in order
	done   chan struct{}

	mu     sync.Mutex
	nextID uint64
	acks   map[uint64]chan []json.RawMessage
}

// maxArgs is how many arguments of an event or ack the client reads.
const maxArgs = 8

var rawArgs = func() []reflect.Type {
	t := make([]reflect.Type, maxArgs)
	for i := range t {
		t[i] = reflect.TypeOf(json.RawMessage{})
	}
	return t
}()

// Dial connects to a go-socket.io server at base (http://host:port) and
// waits for the CONNECT packet of the root namespace.
func Dial(base string) (*Client, error) {
	d := engineio.Dialer{Transports: []transport.Transport{websocket.Default}}
	conn, err := d.Dial(strings.TrimSuffix(base, "/")+"/socket.io/", nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", base, err)
	}
	c := &Client{
		conn:   conn,
		enc:    parser.NewEncoder(conn),
		dec:    parser.NewDecoder(conn),
		Events: make(chan Event, 1024),
		done:   make(chan struct{}),
		acks:   make(map[uint64]chan []json.RawMessage),
	}
	var h parser.Header
	var ev string
	if err := c.dec.DecodeHeader(&h, &ev); err != nil || h.Type != parser.Connect {
		conn.Close()
		return nil, fmt.Errorf("no CONNECT from %s: %v (type %d)", base, err, h.Type)
	}
	_ = c.dec.DiscardLast()
	go c.read()
	return c, nil
}

// ID is the engine.io session id, which go-socket.io uses as the socket id.
func (c *Client) ID() string { return c.conn.ID() }

// Join connects the client to namespace nsp as well.
func (c *Client) Join(nsp string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(parser.Header{Type: parser.Connect, Namespace: nsp})
}

// Emit sends an event to the root namespace without waiting for an ack.
func (c *Client) Emit(event string, args ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(parser.Header{Type: parser.Event}, append([]any{event}, args...))
}

// Call sends an event to the root namespace and waits for its ack.
func (c *Client) Call(timeout time.Duration, event string, args ...any) ([]json.RawMessage, error) {
	ch := make(chan []json.RawMessage, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.acks[id] = ch
	err := c.enc.Encode(parser.Header{Type: parser.Event, ID: id, NeedAck: true}, append([]any{event}, args...))
	c.mu.Unlock()
	if err != nil {
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

// Closed is closed when the connection ends.
func (c *Client) Closed() <-chan struct{} { return c.done }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) read() {
	defer close(c.done)
	for {
		var h parser.Header
		var ev string
		if err := c.dec.DecodeHeader(&h, &ev); err != nil {
			return
		}
		switch h.Type {
		case parser.Event, parser.Ack:
			vals, err := c.dec.DecodeArgs(rawArgs)
			if err != nil {
				return
			}
			// The parser cannot say how many arguments there were: a null
			// argument and a missing one both read as nil. Keep nulls that
			// come before a value; trailing ones are dropped.
			args := make([]json.RawMessage, len(vals))
			last := 0
			for i, v := range vals {
				args[i] = v.Interface().(json.RawMessage)
				if args[i] == nil {
					args[i] = json.RawMessage("null")
				} else {
					last = i + 1
				}
			}
			args = args[:last]
			if h.Type == parser.Ack {
				c.mu.Lock()
				ch := c.acks[h.ID]
				delete(c.acks, h.ID)
				c.mu.Unlock()
				if ch != nil {
					ch <- args
				}
				continue
			}
			c.Events <- Event{Namespace: h.Namespace, Name: ev, Args: args}
		case parser.Disconnect:
			_ = c.dec.DiscardLast()
			c.conn.Close()
			return
		default:
			_ = c.dec.DiscardLast()
		}
	}
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

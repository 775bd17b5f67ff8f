package nodetest

import (
	"encoding/json"
	"testing"
	"time"
)

// Client is a socket.io-client 2.5.0 client running in node: client.js.
type Client struct {
	P  *Proc
	ID string // the socket id the server gave it
}

// Dial connects a websocket client to url (http://host:port); localAddress,
// if not empty, is the source address of its connection.
func Dial(t testing.TB, url, localAddress string) *Client {
	t.Helper()
	return dial(t, url, localAddress, nil)
}

// DialTLS connects a websocket client to url (https://host:port, over
// wss://) trusting only the CA in the PEM file caFile; localAddress as for
// Dial.
func DialTLS(t testing.TB, url, localAddress, caFile string) *Client {
	t.Helper()
	return dial(t, url, localAddress, []string{"SIO_CA=" + caFile})
}

// DialPolling connects a client that only uses HTTP long-polling.
func DialPolling(t testing.TB, url string) *Client {
	t.Helper()
	return dial(t, url, "", []string{"SIO_TRANSPORTS=polling"})
}

func dial(t testing.TB, url, localAddress string, env []string) *Client {
	t.Helper()
	args := []string{url}
	if localAddress != "" {
		args = append(args, localAddress)
	}
	p := Start(t, "client.js", env, args...)
	m := p.Wait(10*time.Second, "connect", func(m Msg) bool { return m["connected"] != nil || m["error"] != nil })
	if m["error"] != nil {
		t.Fatalf("client.js could not connect to %s: %s", url, m["error"])
	}
	return &Client{P: p, ID: m.Str("connected")}
}

// DialV4 tries to connect a socket.io-client 4.8.1 client (Engine.IO 4),
// using only transport (websocket or polling), and returns what it
// reported first: {"connected": id} or {"error": ..., "description": the
// HTTP status of a refused poll}.
func DialV4(t testing.TB, url, transport string) Msg {
	t.Helper()
	p := Start(t, "client.js", []string{"SIO_CLIENT=socket.io-client-4", "SIO_TRANSPORTS=" + transport}, url)
	return p.Wait(10*time.Second, "connect", func(m Msg) bool { return m["connected"] != nil || m["error"] != nil })
}

// Call emits event with an ack callback and returns the ack's arguments.
func (c *Client) Call(t testing.TB, event string, args ...any) []json.RawMessage {
	t.Helper()
	m := c.P.Call(10*time.Second, map[string]any{"event": event, "args": args})
	var ack []json.RawMessage
	if err := json.Unmarshal(m["ack"], &ack); err != nil {
		t.Fatalf("ack of %q: %v", event, err)
	}
	return ack
}

// Next returns the next event the client received (name and JSON args), or
// ("disconnected", reason).
func (c *Client) Next(t testing.TB) (string, string) {
	t.Helper()
	m := c.P.Wait(10*time.Second, "event", func(m Msg) bool { return m["event"] != nil || m["disconnected"] != nil })
	if m["disconnected"] != nil {
		return "disconnected", m.Str("disconnected")
	}
	return m.Str("event"), string(m["args"])
}

// NextNamed returns the JSON args of the next event named name, skipping
// other events.
func (c *Client) NextNamed(t testing.TB, name string) string {
	t.Helper()
	for {
		ev, args := c.Next(t)
		if ev == name {
			return args
		}
		if ev == "disconnected" {
			t.Fatalf("disconnected (%s) while waiting for %q", args, name)
		}
	}
}

// AutoAck makes the client answer (on) or not (off, the default) every
// event that asks for an acknowledgement, with {id, event, args}: its
// socket id, the event's name and arguments.
func (c *Client) AutoAck(t testing.TB, on bool) {
	t.Helper()
	c.P.Call(10*time.Second, map[string]any{"autoAck": on})
}

// Send writes cmd to client.js as it is, without waiting for an answer:
// for its "pad" and "raw" forms, whose client may be disconnected instead.
func (c *Client) Send(cmd map[string]any) { c.P.Send(cmd) }

// Disconnected waits up to timeout for the client to be disconnected,
// skipping events, and returns the reason.
func (c *Client) Disconnected(t testing.TB, timeout time.Duration) string {
	t.Helper()
	return c.P.Wait(timeout, "disconnect", func(m Msg) bool { return m["disconnected"] != nil }).Str("disconnected")
}

// Count makes the client count, without printing them, the events named
// event whose first argument's text starts with prefix, until n came, or
// first passed before the first of them, or idle after one. It returns once
// the client counts (an event it received earlier is not counted, however
// late this process learns of it); the function it returns waits up to
// timeout for the end and returns how many came.
func (c *Client) Count(t testing.TB, event, prefix string, n int, first, idle time.Duration) func(timeout time.Duration) int {
	t.Helper()
	cmd := map[string]any{"count": map[string]any{"event": event, "prefix": prefix, "n": n,
		"firstMs": first.Milliseconds(), "idleMs": idle.Milliseconds()}}
	wait := c.P.answers(c.P.send(cmd), cmd)
	wait(10 * time.Second) // {"counting": true}
	return func(timeout time.Duration) int {
		t.Helper()
		var got int
		if err := json.Unmarshal(wait(timeout)["got"], &got); err != nil {
			t.Fatalf("count of %q: %v", event, err)
		}
		return got
	}
}

// Flooded is what a flood's acknowledgements said: how many came, how many
// were not "ok", and the first of those.
type Flooded struct {
	Acked, Errors int
	FirstError    json.RawMessage
}

// Flood makes the client emit n events {post, text: prefix + i}, each with
// an ack callback, at most window unacknowledged at a time; the function
// it returns waits up to timeout for every ack.
func (c *Client) Flood(t testing.TB, event string, n, window int, post any, prefix string) func(timeout time.Duration) Flooded {
	t.Helper()
	wait := c.P.Go(map[string]any{"flood": map[string]any{"event": event, "n": n, "window": window, "post": post, "prefix": prefix}})
	return func(timeout time.Duration) Flooded {
		t.Helper()
		m := wait(timeout)
		var f Flooded
		if json.Unmarshal(m["acked"], &f.Acked) != nil || json.Unmarshal(m["errors"], &f.Errors) != nil {
			t.Fatalf("flood of %q: answer %v", event, m)
		}
		f.FirstError = m["firstError"]
		return f
	}
}

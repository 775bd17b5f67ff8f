package redisadapter

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"time"

	socketio "github.com/googollee/go-socket.io"
)

// SessionIDGenerator makes engine.io session ids that are unique across
// nodes: 20 URL-safe characters from 15 random bytes, the shape of Node's
// socket ids. go-socket.io's default generator is a per-process counter
// ("1", "2", ...), so two nodes hand out the same ids and a remote join,
// leave or disconnect by id would reach a socket on each of them. Use it in
// every server the adapter serves:
//
//	server := socketio.NewServer(&engineio.Options{
//		SessionIDGenerator: redisadapter.SessionIDGenerator{},
//	})
//
// It is safe for concurrent use.
type SessionIDGenerator struct{}

// NewID returns a new random session id.
func (SessionIDGenerator) NewID() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// looksGenerated reports whether id has the shape SessionIDGenerator (and
// Node) produce. Anything else most likely comes from the default counter.
func looksGenerated(id string) bool {
	if len(id) != 20 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// RemoteSocket describes a socket returned by FetchSockets, held by this
// node or by another one. It is a snapshot: the socket may have left since.
type RemoteSocket struct {
	// ID is the socket id (also the name of its private room).
	ID string `json:"id"`
	// Handshake is what the socket sent when it connected.
	Handshake Handshake `json:"handshake"`
	// Rooms are the rooms the socket is in, its private room included.
	Rooms []string `json:"rooms"`
	// Data is the socket's data as JSON: on a Go node, what SetData set ({} by default).
	Data json.RawMessage `json:"data"`
	// Node is the uid of the adapter holding the socket. It is empty when a
	// Node.js server answered with the classic protocol, whose responses do
	// not say.
	Node string `json:"-"`
}

// Handshake is the connection handshake of a socket, in the shape of
// Node's socket.handshake.
type Handshake struct {
	// Headers are the HTTP request headers, keys in lower case.
	Headers map[string]string `json:"headers"`
	// Time is when the socket connected, as JavaScript's Date.toString.
	Time string `json:"time"`
	// Address is the client's IP address.
	Address string `json:"address"`
	// XDomain is true when the request carried an Origin header.
	XDomain bool `json:"xdomain"`
	// Secure is true when the request came over TLS.
	Secure bool `json:"secure"`
	// Issued is when the socket connected, in milliseconds since the epoch.
	Issued int64 `json:"issued"`
	// URL is the request URL (path and query).
	URL string `json:"url"`
	// Query holds the URL's query parameters.
	Query map[string]string `json:"query"`
	// Auth is the auth payload (always {} from socket.io-client 2.x).
	Auth json.RawMessage `json:"auth"`
}

// UnmarshalJSON accepts Node's handshakes, whose headers and query values
// may be arrays (repeated headers, repeated parameters): they are joined
// with ", ".
func (h *Handshake) UnmarshalJSON(b []byte) error {
	type plain Handshake
	var raw struct {
		plain
		Headers map[string]json.RawMessage `json:"headers"`
		Query   map[string]json.RawMessage `json:"query"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*h = Handshake(raw.plain)
	h.Headers = flattenValues(raw.Headers)
	h.Query = flattenValues(raw.Query)
	return nil
}

func flattenValues(in map[string]json.RawMessage) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		var s string
		var list []string
		switch {
		case json.Unmarshal(v, &s) == nil:
			out[k] = s
		case json.Unmarshal(v, &list) == nil:
			out[k] = strings.Join(list, ", ")
		default:
			out[k] = string(v)
		}
	}
	return out
}

// handshakeOf builds the handshake of a local connection.
func handshakeOf(c socketio.Conn, connected time.Time) Handshake {
	hdr := c.RemoteHeader()
	headers := make(map[string]string, len(hdr))
	for k, v := range hdr {
		headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	u := c.URL()
	query := make(map[string]string)
	for k, v := range u.Query() {
		query[k] = strings.Join(v, ", ")
	}
	addr := ""
	if ra := c.RemoteAddr(); ra != nil {
		addr = ra.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
	}
	return Handshake{
		Headers: headers,
		Time:    connected.Format("Mon Jan 02 2006 15:04:05 GMT-0700 (MST)"),
		Address: addr,
		XDomain: hdr.Get("Origin") != "",
		Secure:  u.Scheme == "https" || u.Scheme == "wss",
		Issued:  connected.UnixMilli(),
		URL:     u.RequestURI(),
		Query:   query,
		Auth:    json.RawMessage("{}"),
	}
}

package redisadapter

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	engineioframe "github.com/googollee/go-socket.io/engineio/frame"
	"github.com/googollee/go-socket.io/engineio/packet"
	"github.com/googollee/go-socket.io/engineio/session"
	"github.com/googollee/go-socket.io/engineio/transport"
	"github.com/googollee/go-socket.io/engineio/transport/polling"
	"github.com/googollee/go-socket.io/engineio/transport/websocket"
)

// ClientLimits bounds what one client can make a go-socket.io server read
// into memory. go-socket.io v1.7.0 reads and parses a message of any size,
// and allocates as many binary attachments as a packet announces; Node's
// socket.io closes a client whose message exceeds maxHttpBufferSize.
// ClientLimits does the same for any go-socket.io server, with or without
// an Adapter:
//
//	server := socketio.NewServer(&engineio.Options{
//		Transports: redisadapter.ClientLimits{MaxMessageSize: 1e6}.Transports(),
//	})
//
// A client that breaks a limit is disconnected (its disconnect handlers
// run) and nothing more of its message is read:
//   - websocket: the connection is closed once MaxMessageSize bytes of one
//     message have been read (go-socket.io reads a message as a stream, a
//     few KiB at a time);
//   - long-polling: a POST whose Content-Length exceeds MaxMessageSize is
//     answered 413 before its body is read, and a chunked body stops at
//     MaxMessageSize. As in Node, the limit is on the whole body, which may
//     batch several messages.
//
// The websocket transport also batches writes: when several frames wait
// for one client (events an Adapter queued for its sockets, with whatever
// go-socket.io writes meanwhile: acks, pongs, its own Emit), they leave
// in one write to the connection instead of one each. The frames and their
// order on the wire are unchanged; a failed write closes the connection,
// so go-socket.io disconnects the client at once. Long-polling already
// sends what waits in one response.
//
// A client speaking Engine.IO 4 (socket.io-client 3.x or 4.x, which
// go-socket.io v1.7.0 cannot serve: it accepts their handshake and then
// fails) is refused at the handshake: an HTTP 400 whose body says to use
// socket.io-client 2.x (or 1.x), and a warning on Logger.
//
// The zero value is the default configuration. A negative limit is a
// programmer error: Transports panics on it.
type ClientLimits struct {
	// MaxMessageSize is the largest message, in bytes, a client may send this server (for long-polling, the largest request body); Options.MaxMessageSize bounds messages between nodes. default: 1e6 (Node's maxHttpBufferSize)
	MaxMessageSize int
	// MaxAttachments is how many binary attachments one event or ack may announce. default: 10
	MaxAttachments int
	// OnReject, if set, is called with the client's address and the reason (wrapping ErrClientLimit) when a client is disconnected, on the goroutine reading that client (a long-polling client's HTTP request); it may be called concurrently. default: nil
	OnReject func(remote net.Addr, err error)
	// Logger receives a warning for each client refused for speaking Engine.IO 4 (socket.io-client 3.x or 4.x). default: slog.Default()
	Logger *slog.Logger
}

func (l *ClientLimits) setDefaults() {
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = 1e6
	}
	if l.MaxAttachments == 0 {
		l.MaxAttachments = 10
	}
	if l.Logger == nil {
		l.Logger = slog.Default()
	}
}

func (l *ClientLimits) validate() error {
	return errors.Join(
		negative("ClientLimits.MaxMessageSize", l.MaxMessageSize),
		negative("ClientLimits.MaxAttachments", l.MaxAttachments),
	)
}

// Transports returns ts, or go-socket.io's defaults (polling, then
// websocket) when none is given, each wrapped to enforce the limits; a
// go-socket.io websocket transport's connections are served by a leaner
// wrapper of this package (the same frames; none of go-socket.io's
// goroutine and timer per frame), whose writes are batched. Pass
// the result as engineio.Options.Transports; the order is kept, since
// engine.io upgrades from a transport to those after it.
//
// Transports panics, with an error wrapping ErrConfig, if a limit is
// negative: check limits read from flags or files before.
func (l ClientLimits) Transports(ts ...transport.Transport) []transport.Transport {
	// A panic rather than an error: Transports is called inside an
	// engineio.Options literal, and a negative limit is a bug in the
	// caller, found at start (as time.NewTicker's non-positive interval).
	l.setDefaults()
	if err := l.validate(); err != nil {
		panic(err)
	}
	if len(ts) == 0 {
		ts = []transport.Transport{polling.Default, websocket.Default}
	}
	out := make([]transport.Transport, len(ts))
	for i, t := range ts {
		if ws, ok := t.(*websocket.Transport); ok {
			t = wsTransport{ws}
		}
		out[i] = limitedTransport{Transport: t, limits: l}
	}
	return out
}

type limitedTransport struct {
	transport.Transport
	limits ClientLimits
}

func (t limitedTransport) Accept(w http.ResponseWriter, r *http.Request) (transport.Conn, error) {
	if eio, err := strconv.Atoi(r.URL.Query().Get("EIO")); err == nil && eio >= 4 {
		t.limits.Logger.Warn("client refused: it speaks Engine.IO 4 (socket.io-client 3.x or 4.x), which go-socket.io v1.7.0 cannot serve; it needs socket.io-client 2.x (or 1.x)",
			"remote", r.RemoteAddr, "EIO", eio, "user_agent", r.UserAgent())
		return refusedConn{err: errorf("%w: %s", ErrClientVersion, clientVersionAdvice)}, nil
	}
	c, err := t.Transport.Accept(w, r)
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: c, limits: t.limits}
	// engine.io upgrades only from a conn it can pause (polling): keep
	// that visible, and hide it where the wrapped conn has none.
	if p, ok := c.(session.Pauser); ok {
		return pausableConn{limitedConn: lc, Pauser: p}, nil
	}
	return lc, nil
}

// clientVersionAdvice is the body of the refusal an Engine.IO 4 client gets.
const clientVersionAdvice = "socket.io-client 3.x and 4.x (Engine.IO 4) cannot connect to this server (go-socket.io v1.7.0 speaks Engine.IO 3): use socket.io-client 2.x (or 1.x)"

// refusedConn is handed to engine.io for a refused handshake. Accept
// cannot answer itself: engine.io answers a failed Accept with a 502 of
// its own after it. Instead, engine.io's new session sets the conn's
// deadlines first, and answers that failure with a 400 carrying the
// error's text, without creating the session or writing anything else.
type refusedConn struct {
	transport.Conn // nil: every method engine.io may call is below
	err            error
}

func (c refusedConn) SetReadDeadline(time.Time) error  { return c.err }
func (c refusedConn) SetWriteDeadline(time.Time) error { return c.err }
func (c refusedConn) Close() error                     { return nil }

type pausableConn struct {
	*limitedConn
	session.Pauser
}

type limitedConn struct {
	transport.Conn
	limits ClientLimits
	once   sync.Once
}

// reject closes the connection, once, and reports why.
func (c *limitedConn) reject(err error) {
	c.once.Do(func() {
		_ = c.Conn.Close()
		if c.limits.OnReject != nil {
			c.limits.OnReject(c.Conn.RemoteAddr(), err)
		}
	})
}

func (c *limitedConn) NextReader() (engineioframe.Type, packet.Type, io.ReadCloser, error) {
	ft, pt, r, err := c.Conn.NextReader()
	if err != nil {
		return ft, pt, r, err
	}
	lr := &limitedReader{rc: r, left: int64(c.limits.MaxMessageSize), conn: c}
	// The parser reads byte by byte from a ReadByte-capable reader, else
	// wraps it in a bufio.Reader of its own: one buffer either way, taken
	// from a pool and given back when the message is closed.
	lr.br = readBuffers.Get().(*bufio.Reader)
	lr.br.Reset(lr.counted())
	if pt == packet.MESSAGE && ft == engineioframe.String {
		if err := c.checkAttachments(lr.br); err != nil {
			c.reject(err)
			_ = lr.Close() // the message, and its buffer back to the pool
			return ft, pt, nil, err
		}
	}
	return ft, pt, lr, nil
}

// checkAttachments reads the head of a socket.io packet ("51-[...", a
// binary event announcing one attachment) and refuses a count above
// MaxAttachments: go-socket.io allocates a slot per announced attachment
// before reading any, so "59999999999999-" alone panics the process
// (makeslice: len out of range, measured) and smaller counts exhaust it.
func (c *limitedConn) checkAttachments(br *bufio.Reader) error {
	head, _ := br.Peek(22) // type byte, up to 20 digits, '-'
	if len(head) == 0 || (head[0] != '5' && head[0] != '6') {
		return nil
	}
	var n uint64
	for i, b := range head[1:] {
		switch {
		case b >= '0' && b <= '9' && i < 20:
			if n = n*10 + uint64(b-'0'); n > uint64(c.limits.MaxAttachments) {
				return errorf("%w: more than %d binary attachments", ErrClientLimit, c.limits.MaxAttachments)
			}
		default:
			return nil
		}
	}
	return nil
}

// ServeHTTP limits long-polling POST bodies before the wrapped transport
// reads them.
func (c *limitedConn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := c.Conn.(http.Handler)
	if !ok {
		return
	}
	if r.Method != http.MethodPost {
		h.ServeHTTP(w, r)
		return
	}
	max := int64(c.limits.MaxMessageSize)
	if r.ContentLength > max {
		c.reject(errorf("%w: request body of %d bytes, over %d", ErrClientLimit, r.ContentLength, max))
		w.Header().Set("Connection", "close")
		http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
		return
	}
	body := &watchedBody{ReadCloser: http.MaxBytesReader(w, r.Body, max)}
	r.Body = body
	h.ServeHTTP(w, r)
	// Closed only now: go-socket.io's polling POST waits for its reader to
	// finish and would hang if the session closed under it.
	if body.over {
		c.reject(errorf("%w: request body over %d bytes", ErrClientLimit, max))
	}
}

type watchedBody struct {
	io.ReadCloser
	over bool // only the request's goroutine reads and writes it
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		b.over = true
	}
	return n, err
}

// limitedReader is one message: it fails once more than the limit has
// been read, closing the connection first so that go-socket.io's drain of
// the rest of the message ends at once instead of reading it all. It then
// closes the message itself: go-socket.io does not when the failure comes
// while it reads a packet's header, and the transport's reader would stay
// open (with a goroutine) for 30 s.
type limitedReader struct {
	rc        io.ReadCloser
	br        *bufio.Reader
	left      int64
	conn      *limitedConn
	keep      bool // br is not given back: the message was closed while br read it
	closeOnce sync.Once
	closeErr  error
}

type countingReader struct{ *limitedReader }

func (r *limitedReader) counted() io.Reader { return countingReader{r} }

func (r countingReader) Read(p []byte) (int, error) {
	if r.left < 0 {
		return 0, r.tooLarge()
	}
	if int64(len(p)) > r.left+1 {
		p = p[:r.left+1]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	if r.left < 0 {
		return 0, r.tooLarge()
	}
	return n, err
}

func (r *limitedReader) tooLarge() error {
	err := errorf("%w: message over %d bytes", ErrClientLimit, r.conn.limits.MaxMessageSize)
	r.conn.reject(err)
	r.keep = true // Close runs inside a Read of br: it is still in use
	_ = r.Close()
	return err
}

// readBuffers holds the bufio.Readers of messages being read: one per
// message read at a time, not one allocated per message.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// Read, ReadByte and UnreadByte read the message; a closed one is at its end.
func (r *limitedReader) Read(p []byte) (int, error) {
	if r.br == nil {
		return 0, io.EOF
	}
	return r.br.Read(p)
}

func (r *limitedReader) ReadByte() (byte, error) {
	if r.br == nil {
		return 0, io.EOF
	}
	return r.br.ReadByte()
}

func (r *limitedReader) UnreadByte() error {
	if r.br == nil {
		return bufio.ErrInvalidUnreadByte
	}
	return r.br.UnreadByte()
}

// Close closes the message and gives its buffer back. go-socket.io reads
// nothing of a message after closing it: its decoder closes a packet's
// frame before it reads the attachments, each from a frame of its own.
func (r *limitedReader) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.rc.Close()
		if !r.keep {
			r.br.Reset(nil)
			readBuffers.Put(r.br)
			r.br = nil
		}
	})
	return r.closeErr
}

package redisadapter

// Corked websocket connections: several frames for one client leave in one
// write.
//
// A websocket connection of go-socket.io writes each frame with one Write
// to its net.Conn (gorilla/websocket v1.4.2 writes header and payload at
// once, under the connection's write lock; it splits a message longer than
// its write buffer into frames, and writes a frame carrying more than twice
// that buffer in two), so each frame costs a write syscall however many
// wait. ClientLimits.Transports
// owns that net.Conn: the websocket transport hijacks the HTTP connection
// through a ResponseWriter that hands it a corkConn. While a socket's queue
// drain writes a run of frames the corkConn is corked: every write to it,
// go-socket.io's own from other goroutines included (acks, pongs, its Emit
// path), is appended to a buffer in the order it came, and uncorking
// writes the buffer with one Write. The bytes on the wire are those of the
// frames in the order gorilla/websocket wrote them.
//
// Inside a run the drain also skips go-socket.io's per-frame writer (a
// goroutine and a timer for each frame, most of the write path's CPU): it
// keeps the writer of one frame open, which holds the connection's write
// lock, and appends the frames before it to the buffer itself, framed as
// gorilla/websocket frames them (appendMessage), so the bytes are the same.

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/googollee/go-socket.io/engineio/transport/websocket"
)

// corkConn is the net.Conn under a websocket connection of
// ClientLimits.Transports.
type corkConn struct {
	net.Conn
	// mu is held across every write to Conn, and while setting its write
	// deadline: writes leave in the order they came, and a flush is bounded
	// by the deadline gorilla/websocket set for the last frame it holds.
	mu    sync.Mutex
	corks int     // the runs of frames being written; buffered while > 0
	buf   *[]byte // what the corks hold back, from corkBuffers
	err   error   // a failed flush: every later write fails with it
	// messageLimit is the largest message gorilla/websocket writes as one
	// frame on this connection; 0: appendMessage never frames one itself.
	messageLimit int
	closeSent    bool // gorilla/websocket wrote a close frame: no data may follow
}

// corkFlushSize is how much a corked connection holds before it writes
// anyway: a run of frames is as long as a socket's queue (32 MiB by
// default), and a copy of it all would double the memory it takes.
const corkFlushSize = 64 << 10

// corkBuffers holds the buffers of corked connections between runs, so
// that an idle connection holds none.
var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// Write writes p, or appends it to the buffer while the connection is
// corked.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	// A close frame from gorilla/websocket is one Write of at most 127
	// bytes starting 0x88; a data frame's Writes start with another header
	// byte, or are payload over 512 bytes.
	if len(p) <= 127 && len(p) > 0 && p[0] == 0x88 {
		c.closeSent = true
	}
	if c.corks == 0 {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = corkBuffers.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= corkFlushSize {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// appendMessage appends an engine.io MESSAGE packet of packet, as one
// unmasked text frame, to what the corks hold back, and reports whether it
// did. The caller holds the connection's write lock (an open frame
// writer), so the frame cannot split one of gorilla/websocket's; it
// declines when the connection is not corked, when gorilla/websocket would
// split the message into several frames, and after a close frame.
func (c *corkConn) appendMessage(packet []byte) bool {
	n := 1 + len(packet) // the engine.io packet type, '4'
	if n > c.messageLimit {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corks == 0 || c.closeSent || c.err != nil {
		return false
	}
	if c.buf == nil {
		c.buf = corkBuffers.Get().(*[]byte)
	}
	b := append(*c.buf, 0x81) // FIN, text
	switch {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, '4')
	*c.buf = append(b, packet...)
	if len(*c.buf) >= corkFlushSize {
		_ = c.flush() // a failure closed the connection, and fails later writes
	}
	return true
}

func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// cork holds back writes until the matching uncork.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corks++
	c.mu.Unlock()
}

// uncork ends a cork; the last one writes what the connection holds,
// with one Write, and returns the error of that write.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corks--; c.corks > 0 || c.buf == nil {
		return nil
	}
	err := c.flush()
	if cap(*c.buf) <= 4*corkFlushSize {
		corkBuffers.Put(c.buf)
	}
	c.buf = nil
	return err
}

// flush writes the buffer. A failed write loses frames gorilla/websocket
// counts as written: the connection is closed, so that its reader fails
// and go-socket.io disconnects the client, and later writes fail. The
// caller holds mu.
func (c *corkConn) flush() error {
	b := *c.buf
	*c.buf = b[:0]
	if len(b) == 0 {
		return nil
	}
	if _, err := c.Conn.Write(b); err != nil {
		c.err = err
		_ = c.Conn.Close()
		return err
	}
	return nil
}

// corkingResponse is the ResponseWriter a websocket transport accepts on:
// the connection it hijacks is a corkConn.
type corkingResponse struct {
	http.ResponseWriter
	hijacker http.Hijacker
	// transport is go-socket.io's websocket transport accepting, or nil
	// for another: then appendMessage is not used.
	transport *websocket.Transport
	conn      *corkConn // set by Hijack
}

func (w *corkingResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := w.hijacker.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	if w.transport != nil {
		w.conn.messageLimit = messageLimit(w.transport.WriteBufferSize, rw.Writer.Size())
	}
	return w.conn, rw, nil
}

// messageLimit is the largest message gorilla/websocket v1.4.2 writes as
// one frame for go-socket.io's websocket transport: what its write buffer
// holds after room for the frame header (14 bytes). Its Upgrader reuses
// the hijacked connection's write buffer (hijacked bytes; net/http's is
// 4096) when WriteBufferSize is 0 and that buffer holds at least 270
// bytes, and allocates WriteBufferSize (default 4096) plus the header
// otherwise.
func messageLimit(writeBufferSize, hijacked int) int {
	const header = 14
	switch {
	case writeBufferSize > 0:
		return writeBufferSize
	case hijacked >= header+256:
		return hijacked - header
	default:
		return 4096
	}
}

// corkableWriter is a frame writer of a corkConn. The connection is
// corked from NextWriter to Close, so that a message leaves in one Write
// even where gorilla/websocket writes it in several (a long message's
// frames, or a frame's head and then the rest), unless a run of frames
// holds it longer.
type corkableWriter struct {
	io.WriteCloser
	conn *corkConn
}

func (w corkableWriter) Close() error {
	err := w.WriteCloser.Close()
	if uerr := w.conn.uncork(); err == nil {
		err = uerr
	}
	return err
}

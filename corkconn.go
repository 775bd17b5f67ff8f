package redisadapter

// Corked websocket connections: several frames for one client leave in one
// write.
//
// A websocket connection of go-socket.io writes each frame with one Write
// to its net.Conn (gorilla/websocket v1.4.2 writes header and payload at
// once, under the connection's write lock; it splits a message longer than
// its write buffer into frames, and writes a frame carrying more than twice
// that buffer in two), so each frame costs a write syscall however many
// wait. ClientLimits.Transports owns that net.Conn: its websocket
// transport (websocket.go) hijacks the HTTP connection through a
// ResponseWriter that hands it a corkConn. While a socket's queue
// drain writes a run of frames the corkConn is corked: every write to it,
// go-socket.io's own from other goroutines included (acks, pongs, its Emit
// path), is appended to a buffer in the order it came, and uncorking
// writes the buffer with one Write. The bytes on the wire are those of the
// frames in the order gorilla/websocket wrote them. Each frame is corked
// from NextWriter to Close too, so that a frame gorilla/websocket writes in
// several Writes leaves in one.

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
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
	conn     *corkConn // set by Hijack
}

func (w *corkingResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := w.hijacker.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: nc}
	return w.conn, rw, nil
}

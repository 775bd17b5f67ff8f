package redisadapter

// The websocket connection ClientLimits.Transports serves. go-socket.io
// v1.7.0's own wraps every frame it reads or writes in a reader or writer
// that starts a goroutine and a 30 s timer, only to print a warning if the
// frame is never closed: in a fan-out profile that bookkeeping cost as
// much as the write syscall itself. The upgrade and the frames are
// go-socket.io's, byte for byte; only the wrapper is ours, and the
// net.Conn under it (corkconn.go), which batches writes.

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	engineioframe "github.com/googollee/go-socket.io/engineio/frame"
	"github.com/googollee/go-socket.io/engineio/packet"
	"github.com/googollee/go-socket.io/engineio/transport"
	"github.com/googollee/go-socket.io/engineio/transport/websocket"
	gorilla "github.com/gorilla/websocket"
)

// wsTransport is go-socket.io's websocket transport with its server side
// served by wsConn. Dial (the client side) stays go-socket.io's.
type wsTransport struct {
	*websocket.Transport
}

// Accept upgrades the request as go-socket.io's Accept does: the same
// buffer sizes, origin check and response headers.
func (t wsTransport) Accept(w http.ResponseWriter, r *http.Request) (transport.Conn, error) {
	up := gorilla.Upgrader{
		ReadBufferSize:  t.ReadBufferSize,
		WriteBufferSize: t.WriteBufferSize,
		CheckOrigin:     t.CheckOrigin,
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		return nil, errorf("websocket upgrade: %T cannot be hijacked", w)
	}
	cw := &corkingResponse{ResponseWriter: w, hijacker: h}
	ws, err := up.Upgrade(cw, r, w.Header())
	if err != nil {
		return nil, err
	}
	return &wsConn{ws: ws, cork: cw.conn, url: *r.URL, header: r.Header, closed: make(chan struct{})}, nil
}

// wsConn is one client's websocket as an engine.io transport.Conn. A
// frame's first byte is its engine.io packet type, as in go-socket.io.
type wsConn struct {
	ws     *gorilla.Conn
	cork   *corkConn // the connection ws writes to
	url    url.URL
	header http.Header

	readMu sync.Mutex // gorilla allows one NextReader call at a time

	// writeMu is held from NextWriter until its writer is closed, so that
	// frames never interleave; gorilla allows one writer at a time, and
	// SetWriteDeadline takes it too.
	writeMu sync.Mutex
	writer  wsWriter // the open writer, reused: writeMu makes it unique

	closed    chan struct{} // closed by Close; ServeHTTP waits for it
	closeOnce sync.Once
}

func (c *wsConn) NextReader() (engineioframe.Type, packet.Type, io.ReadCloser, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return 0, 0, nil, err
	}
	var ft engineioframe.Type
	switch typ {
	case gorilla.TextMessage:
		ft = engineioframe.String
	case gorilla.BinaryMessage:
		ft = engineioframe.Binary
	default:
		return 0, 0, nil, transport.ErrInvalidFrame
	}
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, 0, nil, err
	}
	return ft, packet.ByteToPacketType(b[0], ft), wsReader{r}, nil
}

// wsReader is a frame being read; closing it discards what is left, as
// go-socket.io's does.
type wsReader struct{ io.Reader }

func (r wsReader) Close() error {
	_, err := io.Copy(io.Discard, r.Reader)
	return err
}

func (c *wsConn) NextWriter(ft engineioframe.Type, pt packet.Type) (io.WriteCloser, error) {
	typ, b := gorilla.TextMessage, pt.StringByte()
	switch ft {
	case engineioframe.String:
	case engineioframe.Binary:
		typ, b = gorilla.BinaryMessage, pt.BinaryByte()
	default:
		return nil, transport.ErrInvalidFrame
	}
	c.writeMu.Lock()
	w, err := c.ws.NextWriter(typ)
	if err != nil {
		c.writeMu.Unlock()
		return nil, err
	}
	c.cork.cork()
	c.writer = wsWriter{w: w, c: c}
	if err := c.writer.WriteByte(b); err != nil {
		_ = c.writer.Close()
		return nil, err
	}
	return &c.writer, nil
}

// wsWriter is the frame being written; Close sends it (or leaves it to the
// run of frames that corked the connection) and lets the next frame be
// written. It is closed exactly once and not used after: the next
// NextWriter reuses it. It has WriteByte because
// go-socket.io's packet encoder otherwise wraps each writer in a 4 KiB
// bufio.Writer of its own: gorilla/websocket buffers the frame already.
type wsWriter struct {
	w   io.WriteCloser // nil once closed
	c   *wsConn
	one [1]byte
}

func (w *wsWriter) WriteByte(b byte) error {
	w.one[0] = b
	_, err := w.Write(w.one[:])
	return err
}

func (w *wsWriter) Write(p []byte) (int, error) {
	if w.w == nil {
		return 0, io.ErrClosedPipe
	}
	return w.w.Write(p)
}

func (w *wsWriter) Close() error {
	if w.w == nil {
		return nil
	}
	err := w.w.Close()
	if uerr := w.c.cork.uncork(); err == nil {
		err = uerr
	}
	w.w = nil
	w.c.writeMu.Unlock()
	return err
}

func (c *wsConn) URL() url.URL              { return c.url }
func (c *wsConn) RemoteHeader() http.Header { return c.header }
func (c *wsConn) LocalAddr() net.Addr       { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr      { return c.ws.RemoteAddr() }

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.SetWriteDeadline(t)
}

// ServeHTTP holds the upgrade's request until the connection closes, as
// go-socket.io's does.
func (c *wsConn) ServeHTTP(http.ResponseWriter, *http.Request) { <-c.closed }

func (c *wsConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.ws.Close()
}

// Package faultproxy is a TCP forwarder for tests that puts network faults
// between a client and a server: a blackhole in either direction or both,
// where every connection stays open and nothing is forwarded that way (a
// NAT or firewall that dropped the flow without a reset, a peer that
// hangs), on every connection or on one; latency on every chunk; a reset
// of every open connection; a slow reader of the server's output. It does
// less than Toxiproxy, and needs nothing outside the test binary.
package faultproxy

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Direction is one way through the proxy, or both.
type Direction uint32

const (
	// ToServer is what the client sends.
	ToServer Direction = 1 << iota
	// ToClient is what the server sends.
	ToClient
	// Both is either way.
	Both = ToServer | ToClient
)

// Proxy forwards connections made to Addr to its target.
type Proxy struct {
	ln     net.Listener
	target string

	latency  atomic.Int64 // time.Duration added to every chunk, either way
	readRate atomic.Int64 // bytes per second read from the server; 0: no cap

	mu      sync.Mutex
	dropped Direction // blackholed on the connections opened from now on
	closed  bool
	links   map[*link]struct{}
	wg      sync.WaitGroup
}

// link is one forwarded connection.
type link struct {
	client, server net.Conn
	dropped        atomic.Uint32 // Direction forwarded no more
	done           chan struct{} // closed by close
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

// chunk is what one read returned, and when to write it on.
type chunk struct {
	at time.Time
	b  []byte
}

// Start listens on a free loopback port and forwards to target until the
// test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New listens on a free loopback port and forwards to target; Close stops it.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's "127.0.0.1:<port>".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in direction d on every connection, open or
// opened from now on, and closes none: bytes are read and dropped, so the
// receiving side sees a peer that says nothing.
func (p *Proxy) Blackhole(d Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropped |= d
	for l := range p.links {
		l.dropped.Or(uint32(d))
	}
}

// BlackholeConn stops forwarding in direction d on the one open connection
// the server sees coming from addr (the proxy's end of it: what Redis
// shows as the client's addr in CLIENT LIST), and closes nothing. It
// reports whether such a connection is open: a client's other connections
// go on as before, so one of them can be cut off alone.
func (p *Proxy) BlackholeConn(addr string, d Direction) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		if l.server.LocalAddr().String() == addr {
			l.dropped.Or(uint32(d))
			return true
		}
	}
	return false
}

// Heal forwards the connections opened from now on again. Those open
// during the blackhole stay silent, as a flow a NAT dropped does, until an
// end closes them.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropped = 0
}

// Latency delays every chunk read from now on, either way, by d before
// writing it on, in the order read; 0 ends the delay.
func (p *Proxy) Latency(d time.Duration) { p.latency.Store(int64(d)) }

// SlowRead caps how fast the proxy reads what the server sends, on every
// connection from its next read, to bytesPerSecond, and shrinks the
// proxy's receive buffers: the server's output piles up in its own buffers
// soon (Redis's output buffer of the client), not in the kernel's
// megabytes. 0 lifts the cap.
func (p *Proxy) SlowRead(bytesPerSecond int) {
	p.readRate.Store(int64(bytesPerSecond))
	if bytesPerSecond > 0 {
		for _, l := range p.open() {
			l.readBuffer(bytesPerSecond)
		}
	}
}

// readBuffer sets the receive buffer of the server's end: small under a
// read cap, large (no longer autotuned) once it is lifted.
func (l *link) readBuffer(rate int) {
	if tc, ok := l.server.(*net.TCPConn); ok {
		if rate > 0 {
			_ = tc.SetReadBuffer(128 << 10) // above loopback's MSS (64 KiB), or the sender stalls
		} else {
			_ = tc.SetReadBuffer(4 << 20)
		}
	}
}

// Reset closes every open connection with a reset (RST) at both ends, as a
// middlebox that lost the flow's state does; new connections are forwarded
// as before.
func (p *Proxy) Reset() {
	for _, l := range p.open() {
		for _, c := range []net.Conn{l.client, l.server} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close sends RST
			}
		}
		l.close()
	}
}

// Conns is how many connections are open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Silent is how many of the open connections were caught in a blackhole
// and still forward nothing one way or both: a client that renews its
// dead connections leaves none.
func (p *Proxy) Silent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		if l.dropped.Load() != 0 {
			n++
		}
	}
	return n
}

// Close stops listening, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	for _, l := range p.open() {
		l.close()
	}
	p.wg.Wait()
}

func (p *Proxy) open() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			return
		}
		l.dropped.Store(uint32(p.dropped))
		if rate := p.readRate.Load(); rate > 0 {
			l.readBuffer(int(rate))
		}
		p.links[l] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(l, c, s, ToServer)
		go p.pipe(l, s, c, ToClient)
	}
}

// pipe reads from src until it fails, dropping what it reads while
// direction dir is blackholed, and hands the rest to a writer to dst that
// keeps the latency; then it closes the link.
func (p *Proxy) pipe(l *link, src, dst net.Conn, dir Direction) {
	defer p.wg.Done()
	chunks := make(chan chunk, 256)
	p.wg.Add(1)
	go p.write(l, dst, chunks)
	defer close(chunks)
	buf := make([]byte, 32<<10)
	for {
		size, rate := len(buf), int64(0)
		if dir == ToClient {
			if rate = p.readRate.Load(); rate > 0 {
				size = int(max(1, min(int64(size), rate/20))) // 20 reads a second
			}
		}
		n, err := src.Read(buf[:size])
		if n > 0 && Direction(l.dropped.Load())&dir == 0 {
			c := chunk{at: time.Now().Add(time.Duration(p.latency.Load())), b: bytes.Clone(buf[:n])}
			select {
			case chunks <- c:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return
		}
		if rate > 0 {
			select {
			case <-time.After(time.Duration(int64(n) * int64(time.Second) / rate)):
			case <-l.done:
				return
			}
		}
	}
}

// write writes each chunk to dst once its time comes, then closes the
// link (at the end of the chunks, on a write error, or when it closes).
func (p *Proxy) write(l *link, dst net.Conn, chunks <-chan chunk) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	for c := range chunks {
		if wait := time.Until(c.at); wait > 0 {
			select {
			case <-time.After(wait):
			case <-l.done:
				return
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

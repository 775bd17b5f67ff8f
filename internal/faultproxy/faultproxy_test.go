package faultproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo serves lines back until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	addr, conns := server(t)
	go func() {
		for c := range conns {
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return addr
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip reports whether a line comes back within d.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) bool {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	line, err := r.ReadString('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		t.Fatal(err)
	}
	return line == "ping\n"
}

func TestBlackholeAndHeal(t *testing.T) {
	p := Start(t, echo(t))
	old, oldR := dial(t, p.Addr())
	if !roundTrip(t, old, oldR, 5*time.Second) {
		t.Fatal("nothing forwarded before the fault")
	}

	p.Blackhole(Both)
	// A timeout here is the fault itself: the connection stays open and
	// silent.
	if roundTrip(t, old, oldR, 200*time.Millisecond) {
		t.Fatal("an open connection forwarded during the blackhole")
	}
	during, duringR := dial(t, p.Addr())
	if roundTrip(t, during, duringR, 200*time.Millisecond) {
		t.Fatal("a new connection forwarded during the blackhole")
	}
	if n := p.Conns(); n != 2 {
		t.Fatalf("%d connections open through the proxy, want 2: a blackhole closes nothing", n)
	}
	if n := p.Silent(); n != 2 {
		t.Fatalf("%d silent connections, want 2", n)
	}

	p.Heal()
	fresh, freshR := dial(t, p.Addr())
	if !roundTrip(t, fresh, freshR, 5*time.Second) {
		t.Fatal("a new connection does not forward after Heal")
	}
	if roundTrip(t, old, oldR, 200*time.Millisecond) {
		t.Fatal("a connection blackholed forwards again after Heal")
	}
	old.Close()
	during.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.Silent() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d silent connections left after their clients closed them", p.Silent())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	p := Start(t, echo(t))
	c, r := dial(t, p.Addr())
	if !roundTrip(t, c, r, 5*time.Second) {
		t.Fatal("nothing forwarded")
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("the connection is still open after Close")
	}
	if p.Conns() != 0 {
		t.Fatalf("%d connections left", p.Conns())
	}
}

// server accepts connections until the test ends and hands each to the
// test, which plays the server's side itself.
func server(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		defer close(conns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			conns <- c
		}
	}()
	return ln.Addr().String(), conns
}

// pair is a client connected through p and the server's end of it.
func pair(t *testing.T, p *Proxy, conns <-chan net.Conn) (client, srv net.Conn) {
	t.Helper()
	client, _ = dial(t, p.Addr())
	select {
	case srv = <-conns:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect to the server")
	}
	return client, srv
}

// passes reports whether a line written to from reaches to within d.
func passes(t *testing.T, from, to net.Conn, d time.Duration) bool {
	t.Helper()
	if _, err := from.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(d))
	defer to.SetReadDeadline(time.Time{})
	buf := make([]byte, 2)
	_, err := io.ReadFull(to, buf)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// A blackhole in one direction drops that way only, on open and new
// connections alike.
func TestBlackholeOneDirection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		d        Direction
		up, down bool // client→server and server→client still pass
	}{
		{"ToServer", ToServer, false, true},
		{"ToClient", ToClient, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := server(t)
			p := Start(t, addr)
			old, oldSrv := pair(t, p, conns)
			p.Blackhole(tc.d)
			fresh, freshSrv := pair(t, p, conns)
			for _, c := range [][2]net.Conn{{old, oldSrv}, {fresh, freshSrv}} {
				if got := passes(t, c[0], c[1], 300*time.Millisecond); got != tc.up {
					t.Fatalf("client to server passes: %v, want %v", got, tc.up)
				}
				if got := passes(t, c[1], c[0], 300*time.Millisecond); got != tc.down {
					t.Fatalf("server to client passes: %v, want %v", got, tc.down)
				}
			}
			if n := p.Silent(); n != 2 {
				t.Fatalf("%d silent connections, want 2", n)
			}
		})
	}
}

// Latency delays each way by d and keeps the order of what it carries;
// lifting it makes new chunks pass at once.
func TestLatency(t *testing.T) {
	const d = 150 * time.Millisecond
	p := Start(t, echo(t))
	c, r := dial(t, p.Addr())
	p.Latency(d)
	start := time.Now()
	const lines = 20
	for i := range lines {
		if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // separate chunks
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range lines {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line != fmt.Sprintf("%d\n", i) {
			t.Fatalf("line %d came back as %q: out of order", i, line)
		}
		if i == 0 {
			if rtt := time.Since(start); rtt < 2*d {
				t.Fatalf("the first line came back after %v, want at least %v (both ways)", rtt, 2*d)
			}
		}
	}
	p.Latency(0)
	start = time.Now()
	if !roundTrip(t, c, r, 5*time.Second) {
		t.Fatal("nothing forwarded after the latency was lifted")
	}
	if rtt := time.Since(start); rtt >= d {
		t.Fatalf("round trip of %v after the latency was lifted", rtt)
	}
}

// Reset closes every open connection with RST at both ends, and forwards
// new ones.
func TestReset(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := pair(t, p, conns)
	if !passes(t, c, s, 5*time.Second) {
		t.Fatal("nothing forwarded before the reset")
	}
	p.Reset()
	for name, conn := range map[string]net.Conn{"client": c, "server": s} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the %s's end read %v, want a connection reset", name, err)
		}
	}
	c2, s2 := pair(t, p, conns)
	if !passes(t, c2, s2, 5*time.Second) || !passes(t, s2, c2, 5*time.Second) {
		t.Fatal("a new connection is not forwarded after the reset")
	}
}

// SlowRead caps what the server's end can send to the client's rate;
// lifting it forwards at full speed again.
func TestSlowRead(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	const rate = 20 << 10 // 20 KiB/s
	p.SlowRead(rate)      // before connecting: a read already waiting has a full buffer
	c, s := pair(t, p, conns)
	go s.Write(make([]byte, 1<<20)) // more than the cap lets through in a second
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n == 0 || n > 2*rate {
		t.Fatalf("%d bytes read in a second through a cap of %d bytes/s", n, rate)
	}
	p.SlowRead(0)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest := make([]byte, 1<<20-int(n))
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatalf("the rest did not come at full speed once the cap was lifted: %v", err)
	}
}

// BlackholeConn silences the one connection the server sees coming from
// the address given, and no other; an address that is not one of the
// proxy's connections silences nothing.
func TestBlackholeConn(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	victim, victimSrv := pair(t, p, conns)
	other, otherSrv := pair(t, p, conns)
	if p.BlackholeConn(victim.LocalAddr().String(), Both) {
		t.Fatal("the client's own address named a connection: the server's view of it is the proxy's end")
	}
	if !p.BlackholeConn(victimSrv.RemoteAddr().String(), Both) {
		t.Fatal("the connection the server sees was not found")
	}
	if passes(t, victim, victimSrv, 300*time.Millisecond) || passes(t, victimSrv, victim, 300*time.Millisecond) {
		t.Fatal("the blackholed connection forwards")
	}
	if !passes(t, other, otherSrv, 5*time.Second) || !passes(t, otherSrv, other, 5*time.Second) {
		t.Fatal("another connection stopped forwarding")
	}
	fresh, freshSrv := pair(t, p, conns)
	if !passes(t, fresh, freshSrv, 5*time.Second) || !passes(t, freshSrv, fresh, 5*time.Second) {
		t.Fatal("a new connection is not forwarded")
	}
	if n := p.Silent(); n != 1 {
		t.Fatalf("%d silent connections, want 1", n)
	}
}

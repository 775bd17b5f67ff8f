package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves lines back until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
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
	return ln.Addr().String()
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

	p.Blackhole()
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

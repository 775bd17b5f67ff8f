package redisadapter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
	"github.com/blogstack/redisadapter/internal/faultproxy"
	"github.com/blogstack/redisadapter/internal/redistest"
	"github.com/blogstack/redisadapter/internal/testpki"
)

// The heal watch, ticked while Redis's answers are dropped on their way
// back, dials no more than healInFlight at once and closes nothing (its
// PINGs go unanswered); once the way back heals, its next dial is
// answered and the connection dialed into the blackhole, silent for good
// (a flow a NAT dropped stays dropped), is closed, once: the renewal that
// follows is given wait before the watch closes anything again.
func TestHealWatchClosesTheSilentConnectionOnceHealed(t *testing.T) {
	srv := redistest.Start(t)
	px := faultproxy.Start(t, srv.Addr())
	c := &connCounter{}
	spawn := spawner(t, nil)
	var closes, closed atomic.Int64
	report := func(n int) {
		closes.Add(1)
		closed.Add(int64(n))
	}
	const wait = 100 * time.Millisecond
	ctx := t.Context()
	w := &healWatch{}

	px.Blackhole(faultproxy.ToClient)
	silent, err := c.dial(ctx, px.Addr(), &net.Dialer{}, nil)
	require.NoError(t, err)
	defer silent.Close()
	_, err = silent.Write([]byte("PING\r\n"))
	require.NoError(t, err)

	maxInFlight := 0
	for end := time.Now().Add(3 * wait); time.Now().Before(end); time.Sleep(time.Millisecond) {
		w.tick(ctx, c, px.Addr(), wait, spawn, report)
		w.mu.Lock()
		maxInFlight = max(maxInFlight, w.inFlight)
		w.mu.Unlock()
	}
	require.LessOrEqual(t, maxInFlight, healInFlight)
	require.Greater(t, maxInFlight, 1, "dials overlap while unanswered")
	require.Zero(t, closes.Load(), "nothing answered during the blackhole")

	px.Heal()
	healed := time.Now()
	await.True(t, 5*time.Second, time.Millisecond, "an answer after the heal", func() bool {
		w.tick(ctx, c, px.Addr(), wait, spawn, report)
		return closes.Load() > 0
	})
	t.Logf("heal found %v after it", time.Since(healed).Round(time.Millisecond))
	require.Equal(t, int64(1), closed.Load(), "the connection dialed into the blackhole")
	c.mu.Lock()
	require.Empty(t, c.open)
	c.mu.Unlock()

	// Answered again at once, but within wait of the last close: nothing
	// more is closed.
	again, err := c.dial(ctx, px.Addr(), &net.Dialer{}, nil)
	require.NoError(t, err)
	defer again.Close()
	for end := time.Now().Add(wait / 2); time.Now().Before(end); time.Sleep(time.Millisecond) {
		w.tick(ctx, c, px.Addr(), wait, spawn, report)
	}
	require.Equal(t, int64(1), closes.Load())
}

// answers is true for a Redis that answers, false within the wait for a
// way that drops everything.
func TestHealWatchAnswers(t *testing.T) {
	srv := redistest.Start(t)
	px := faultproxy.Start(t, srv.Addr())
	c := &connCounter{}
	require.True(t, c.answers(context.Background(), px.Addr(), time.Second))
	px.Blackhole(faultproxy.ToServer)
	start := time.Now()
	require.False(t, c.answers(context.Background(), px.Addr(), 100*time.Millisecond))
	require.Less(t, time.Since(start), 2*time.Second)
}

// Over TLS, the watch's PING goes after the handshake, with the client's
// configuration (its ServerName taken from the address when unset); a
// plain PING to a TLS port is not an answer.
func TestHealWatchAnswersOverTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	serverCert, serverKey := ca.Issue(t, "redis", false)
	srv := redistest.StartWithFiles(t, map[string]string{
		"ca.crt": ca.CertPEM, "server.crt": serverCert, "server.key": serverKey,
	}, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", "{dir}/server.crt",
		"--tls-key-file", "{dir}/server.key", "--tls-ca-cert-file", "{dir}/ca.crt", "--tls-auth-clients", "no")
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM([]byte(ca.CertPEM)))
	require.False(t, (&connCounter{}).answers(context.Background(), srv.Addr(), time.Second))
	c := &connCounter{tls: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	require.True(t, c.answers(context.Background(), srv.Addr(), time.Second))
}

// The longer a renewal has been stuck, the sparser the watch's dials: a
// frozen Redis keeps each in its accept queue until it thaws.
func TestHealWatchDialsSparselyWhenStuckLong(t *testing.T) {
	srv := redistest.Start(t)
	px := faultproxy.Start(t, srv.Addr())
	px.Blackhole(faultproxy.ToClient)
	c := &connCounter{}
	dials := 0
	spawn := spawner(t, &dials)
	// A wait long enough that no pause between ticks on a loaded machine
	// starts the stuck time again; wait/healInFlight is still below
	// 14s/healDecay.
	const wait = time.Second
	now := time.Now()
	w := &healWatch{since: now.Add(-14 * time.Second), ticked: now}
	for end := now.Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		w.tick(t.Context(), c, px.Addr(), wait, spawn, func(int) { t.Error("nothing answers") })
	}
	require.Equal(t, 1, dials, "one dial per 14s/healDecay (350 ms)")
}

// spawner is the heal watch's spawn for a test: it runs f on a goroutine
// the test waits for, and counts it in started (nil: not counted).
func spawner(t *testing.T, started *int) func(func()) bool {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	return func(f func()) bool {
		if started != nil {
			*started++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
		return true
	}
}

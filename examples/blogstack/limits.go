package main

// What one client may send once connected: -max-message-size (a larger
// message disconnects it before it is read), -max-posts and -event-rate
// (past them its events get an error ack). guard.go bounds connecting.

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blogstack/redisadapter"
)

// readerLimits bounds what one connection may do once connected: how many
// posts it reads at once and how fast it sends events. Past either, its
// events get an error ack; nothing else changes for it or for others.
type readerLimits struct {
	maxPosts  int     // posts joined at once (0: no limit)
	rate      float64 // events per second, sustained (0: no limit)
	burst     float64 // events allowed at once
	mu        sync.Mutex
	buckets   map[string]*bucket // by socket id, from connect to disconnect
	rateError string

	// For /metrics.
	rejected atomic.Uint64 // clients disconnected by redisadapter.ClientLimits
	limited  atomic.Uint64 // events answered with a limit's error ack
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newReaderLimits(maxPosts int, rate float64) *readerLimits {
	return &readerLimits{
		maxPosts: maxPosts, rate: rate, buckets: make(map[string]*bucket),
		// Twice the rate, but at least 1: below 1 no event would ever pass.
		burst:     max(1, 2*rate),
		rateError: fmt.Sprintf("error: more than %g events per second from this connection; slow down", rate),
	}
}

// connected starts counting a socket's events; disconnected forgets it.
// Only these two create and delete entries, so an event racing a
// disconnect cannot leave one behind.
func (l *readerLimits) connected(id string) {
	l.mu.Lock()
	if l.buckets[id] == nil {
		l.buckets[id] = &bucket{tokens: l.burst, last: time.Now()}
	}
	l.mu.Unlock()
}

func (l *readerLimits) disconnected(id string) {
	l.mu.Lock()
	delete(l.buckets, id)
	l.mu.Unlock()
}

// event takes one token from the socket's bucket and returns "" if it had
// one, else the error ack to send.
func (l *readerLimits) event(id string) string {
	if l.rate <= 0 {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[id]
	if b == nil { // connect hook not run yet, or already disconnected
		return ""
	}
	now := time.Now()
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		l.limited.Add(1)
		return l.rateError
	}
	b.tokens--
	return ""
}

// join checks one more post for a connection that reads joined posts
// already, and returns "" if it may read it, else the error ack to send.
func (l *readerLimits) join(joined int) string {
	if l.maxPosts <= 0 || joined < l.maxPosts {
		return ""
	}
	l.limited.Add(1)
	return fmt.Sprintf("error: a connection reads at most %d posts at once; leave one first", l.maxPosts)
}

// clientLimits disconnects a client whose message (or long-polling request
// body) exceeds maxMessage bytes before it is read, and counts it.
func (l *readerLimits) clientLimits(maxMessage int, log *slog.Logger) redisadapter.ClientLimits {
	return redisadapter.ClientLimits{
		MaxMessageSize: maxMessage,
		Logger:         log, // socket.io-client 3/4 refused at the handshake
		OnReject: func(remote net.Addr, err error) {
			l.rejected.Add(1)
			log.Warn("client disconnected", "remote", remote.String(), "err", err)
		},
	}
}

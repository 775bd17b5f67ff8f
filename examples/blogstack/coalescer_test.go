package main

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Triggers during a run cost exactly one more run, which starts after
// them; other keys run alongside; after close, triggers run nothing.
func TestCoalescer(t *testing.T) {
	started := make(chan string)
	release := make(chan struct{})
	var runs atomic.Int32
	c := newCoalescer(func(key string) {
		runs.Add(1)
		started <- key
		<-release
	})
	recv := func(what string) string {
		t.Helper()
		select {
		case k := <-started:
			return k
		case <-time.After(10 * time.Second):
			t.Fatalf("no run: %s", what)
			return ""
		}
	}

	c.trigger("a")
	require.Equal(t, "a", recv("first run of a"))
	c.trigger("a") // during the run: coalesced into one more
	c.trigger("a")
	c.trigger("b") // another key: its own run, at once
	require.Equal(t, "b", recv("run of b"))
	release <- struct{}{} // a's first run ends (or b's: both are waiting)
	release <- struct{}{}
	require.Equal(t, "a", recv("a's second run, for the triggers during its first"))
	release <- struct{}{}
	c.close() // returns once every run has ended
	require.Equal(t, int32(3), runs.Load(), "a twice, b once")

	c.trigger("a")
	c.close()
	require.Equal(t, int32(3), runs.Load(), "a trigger after close runs nothing")
}

package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The receipts' policy: a key's values run one at a time in the order
// pushed; past maxWaiting, and after stop, push refuses; values already
// waiting at stop still run (finish); wait is bounded by its context.
func TestKeyedQueueFinishes(t *testing.T) {
	started := make(chan int)
	release := make(chan struct{})
	q := newKeyedQueue(2, true, func(_ string, v int) {
		started <- v
		<-release
	})
	recv := func(what string) int {
		t.Helper()
		select {
		case v := <-started:
			return v
		case <-time.After(10 * time.Second):
			t.Fatalf("no run: %s", what)
			return 0
		}
	}

	require.True(t, q.push("a", 1))
	require.Equal(t, 1, recv("1, at once"))
	require.True(t, q.push("a", 2))
	require.True(t, q.push("a", 3))
	require.False(t, q.push("a", 4), "two wait already")
	q.stop()
	require.False(t, q.push("b", 1), "stopped")

	expired, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.ErrorIs(t, q.wait(expired), context.DeadlineExceeded, "1 still runs")

	for _, want := range []int{2, 3} {
		release <- struct{}{}
		require.Equal(t, want, recv("the next waiting value, after stop"))
	}
	release <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, q.wait(ctx))
}

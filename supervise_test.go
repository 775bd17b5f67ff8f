package redisadapter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/blogstack/redisadapter/internal/await"
)

// syncWriter is a log destination safe for the supervisor's goroutine.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// One outage is one warning, one count and one pair of outage calls,
// however many attempts fail within it; the attempt that serves again ends
// it with one info line. Failures before the first up are an outage too.
func TestSupervisorOutagePair(t *testing.T) {
	var logs syncWriter
	var outages atomic.Uint64
	s := supervisor{log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), outages: &outages}
	var calls []bool
	attempts := 0
	// Serves, fails; fails twice more; serves, then ends.
	script := []bool{true, false, false, true}
	s.run(context.Background(), loop{
		what: "test loop",
		attempt: func(ctx context.Context, up func()) error {
			attempts++
			if attempts > len(script) {
				return nil
			}
			if script[attempts-1] {
				up()
				up() // idempotent
			}
			return errors.New("broken")
		},
		outage: func(down bool) { calls = append(calls, down) },
	})
	require.Equal(t, len(script)+1, attempts)
	// Attempt 1 served then failed: outage 1 begins; attempts 2 and 3 fail
	// within it; attempt 4 serves (outage 1 ends) and fails: outage 2
	// begins; attempt 5 ends the loop during it, which ends it too.
	require.Equal(t, []bool{true, false, true, false}, calls)
	require.EqualValues(t, 2, outages.Load())
	out := logs.String()
	require.Equal(t, 2, strings.Count(out, "level=WARN msg=\"test loop lost; trying again\""), out)
	require.Equal(t, 1, strings.Count(out, "level=INFO msg=\"test loop back\""), out)
	require.Equal(t, 2, strings.Count(out, "level=DEBUG msg=\"test loop: trying again\""), out)
}

// run returns when its context ends, during the back-off or an attempt.
func TestSupervisorStopsWithItsContext(t *testing.T) {
	var outages atomic.Uint64
	s := supervisor{log: slog.New(slog.DiscardHandler), outages: &outages}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var attempts atomic.Int32
	go func() {
		defer close(done)
		s.run(ctx, loop{what: "test loop", attempt: func(ctx context.Context, up func()) error {
			if attempts.Add(1) == 3 {
				<-ctx.Done() // holds the connection until the end
				return ctx.Err()
			}
			return errors.New("broken")
		}})
	}()
	await.True(t, 5*time.Second, time.Millisecond, "the third attempt", func() bool { return attempts.Load() == 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return when its context ended")
	}
}

// An attempt that failed while the adapter closed its connections of its
// own accord (supervisor.closes rose) is tried again without a back-off;
// one that failed otherwise waits one.
func TestSupervisorRetriesAtOnceAfterOwnClose(t *testing.T) {
	var outages, closes atomic.Uint64
	s := supervisor{log: slog.New(slog.DiscardHandler), outages: &outages, closes: &closes}
	run := func(n int, closed bool) time.Duration {
		attempts := 0
		start := time.Now()
		s.run(context.Background(), loop{what: "test loop", attempt: func(ctx context.Context, up func()) error {
			if attempts++; attempts > n {
				return nil
			}
			if closed {
				closes.Add(1)
			}
			return errors.New("closed")
		}})
		return time.Since(start)
	}
	// 50 back-offs would take more than a second (at least 5, 10, 20 ms,
	// then 25 ms each).
	require.Less(t, run(50, true), 250*time.Millisecond)
	require.GreaterOrEqual(t, run(4, false), (5+10+20+25)*time.Millisecond)
}

// The delays double from min to max, with jitter in [d/2, d].
func TestBackoffBounds(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 50 * time.Millisecond}
	for _, want := range []time.Duration{10, 20, 40, 50, 50} {
		d := b.next()
		require.GreaterOrEqual(t, d, want*time.Millisecond/2)
		require.LessOrEqual(t, d, want*time.Millisecond)
	}
	b.reset()
	require.LessOrEqual(t, b.next(), 10*time.Millisecond)
}

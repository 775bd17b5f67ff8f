// Package await is how tests wait: for a condition, polled until it holds
// or a deadline passes, never for a bare sleep. The root package's tests,
// internal/redistest and the examples' tests share it.
package await

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Attempt bounds the context each call of a Check gets (or the deadline,
// if that comes first).
const Attempt = 2 * time.Second

// True calls cond every interval until it returns true, and fails t,
// naming what, if timeout passes first.
func True(t testing.TB, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	Check(t, timeout, interval, what, func(context.Context) error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = fmt.Errorf("condition false")

// Check calls f every interval until it returns nil, and fails t, naming
// what and f's last error, if timeout passes first. Each call gets a
// context that ends after Attempt or at the deadline, whichever is first.
func Check(t testing.TB, timeout, interval time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithDeadline(context.Background(), earliest(deadline, time.Now().Add(Attempt)))
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			if err == errNotYet {
				t.Fatalf("not within %v: %s", timeout, what)
			}
			t.Fatalf("not within %v: %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

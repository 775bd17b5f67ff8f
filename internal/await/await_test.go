package await

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestTrueReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	True(t, time.Minute, time.Millisecond, "third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestCheckPassesABoundedContext(t *testing.T) {
	Check(t, time.Minute, time.Millisecond, "a deadline", func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok || time.Until(d) > Attempt {
			return fmt.Errorf("deadline %v, %v", d, ok)
		}
		return nil
	})
}

// recorder is a TB whose Fatalf records the message and ends the goroutine,
// as testing's does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestFailsAtTheDeadlineWithTheLastError(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(tb testing.TB)
		want string
	}{
		{"True", func(tb testing.TB) {
			True(tb, 30*time.Millisecond, time.Millisecond, "never", func() bool { return false })
		}, "not within 30ms: never"},
		{"Check", func(tb testing.TB) {
			Check(tb, 30*time.Millisecond, time.Millisecond, "never", func(context.Context) error { return errors.New("still 2") })
		}, "not within 30ms: never: still 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			start := time.Now()
			done := make(chan struct{})
			go func() { defer close(done); tc.run(r) }()
			<-done
			if r.msg != tc.want {
				t.Fatalf("failed with %q, want %q", r.msg, tc.want)
			}
			if took := time.Since(start); took < 30*time.Millisecond || strings.Contains(r.msg, "%!") {
				t.Fatalf("failed after %v with %q", took, r.msg)
			}
		})
	}
}

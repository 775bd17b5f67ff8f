package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Under 0.5 events per second, twice the rate is less than one event: the
// burst is one, so a connection's first event passes and the next, at once,
// does not.
func TestEventRateBelowHalf(t *testing.T) {
	for _, rate := range []float64{0.1, 0.4, 0.5} {
		l := newReaderLimits(0, rate)
		l.connected("s")
		require.Empty(t, l.event("s"), "rate %g: first event refused", rate)
		require.Contains(t, l.event("s"), "per second", "rate %g: second event at once", rate)
	}
}

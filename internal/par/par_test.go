package par

import (
	"sync/atomic"
	"testing"
)

// TestDoWithCallsEachOnce: every index exactly once, states not shared
// between goroutines (each state counts its own calls; they add up).
func TestDoWithCallsEachOnce(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1000, 100000} {
		seen := make([]atomic.Int32, n)
		var states, calls atomic.Int64
		DoWith(n, 64, func() *int64 { states.Add(1); return new(int64) }, func(i int, c *int64) {
			seen[i].Add(1)
			*c++ // unsynchronised: -race fails if two goroutines share c
			calls.Add(1)
		})
		for i := range seen {
			if got := seen[i].Load(); got != 1 {
				t.Fatalf("n=%d: index %d called %d times", n, i, got)
			}
		}
		if calls.Load() != int64(n) || states.Load() < 1 {
			t.Fatalf("n=%d: %d calls, %d states", n, calls.Load(), states.Load())
		}
	}
}

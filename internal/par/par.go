// Package par runs loops over independent items on every CPU.
package par

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Do calls f(0) … f(n-1), on GOMAXPROCS goroutines when there are at least
// minPer items per goroutine, else in the calling goroutine. f must be
// safe to run concurrently for different i.
func Do(n, minPer int, f func(i int)) {
	DoWith(n, minPer, func() struct{} { return struct{}{} }, func(i int, _ struct{}) { f(i) })
}

// DoWith is Do with a state per goroutine, made by state (a cache that
// needs no lock, for example).
func DoWith[S any](n, minPer int, state func() S, f func(i int, s S)) {
	workers := min(runtime.GOMAXPROCS(0), (n+minPer-1)/max(minPer, 1))
	if workers <= 1 {
		s := state()
		for i := range n {
			f(i, s)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			s := state()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i, s)
			}
		})
	}
	wg.Wait()
}

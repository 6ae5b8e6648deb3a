//go:build !unix

package main

import "time"

// cpuTime is not measured here (see the unix version).
func cpuTime() time.Duration { return 0 }

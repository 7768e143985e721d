//go:build !unix

package checkpoint

import "time"

// cpuTime is not measured here; benchmarks skip the figures that need it.
func cpuTime() time.Duration { return 0 }

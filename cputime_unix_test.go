//go:build unix

package checkpoint

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used (user + system, all
// threads): on a shared machine, benchmarks compare it besides the wall
// clock, which counts other processes' turns too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

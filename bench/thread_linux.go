//go:build linux

package main

import (
	"syscall"
	"time"
	"unsafe"
)

// threadUsage is the calling thread's CPU time, its context switches so
// far: voluntary (it blocked: a system call waiting, a lock) and
// involuntary (the kernel's scheduler ran something else), and its page
// faults (minor: memory mapped on first touch, no disk). The caller locks
// its goroutine to the thread.
type threadUsage struct {
	cpu         time.Duration
	blocked     int64
	descheduled int64
	faults      int64
}

func readThreadUsage() (threadUsage, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return threadUsage{}, false
	}
	// The CPU time from the thread's clock: rusage's is sampled at the
	// kernel's tick (4 ms), so one save could be charged a whole tick.
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3 /* CLOCK_THREAD_CPUTIME_ID */, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return threadUsage{}, false
	}
	return threadUsage{
		cpu:         time.Duration(ts.Nano()),
		blocked:     ru.Nvcsw,
		descheduled: ru.Nivcsw,
		faults:      ru.Minflt + ru.Majflt,
	}, true
}

//go:build !linux

package main

import "time"

type threadUsage struct {
	cpu         time.Duration
	blocked     int64
	descheduled int64
	faults      int64
}

// readThreadUsage is Linux only (RUSAGE_THREAD).
func readThreadUsage() (threadUsage, bool) { return threadUsage{}, false }

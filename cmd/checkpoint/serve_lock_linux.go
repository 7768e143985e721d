//go:build linux

package main

import (
	"bytes"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockSet is the files a process holds a lock on now, by device and inode.
type lockSet map[[2]uint64]bool

// heldLocks reads /proc/locks. The web view must not probe a checkpoint's
// lock by taking it, even for a moment: a job starting at that moment would
// be refused. The kernel's list tells who holds what without touching it.
func heldLocks() lockSet {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	set := lockSet{}
	for line := range bytes.Lines(b) {
		// 1: FLOCK  ADVISORY  WRITE 10681 fe:00:9978918 0 EOF
		f := bytes.Fields(line)
		if len(f) < 6 || string(f[1]) != "FLOCK" {
			continue
		}
		id := bytes.Split(f[5], []byte(":"))
		if len(id) != 3 {
			continue
		}
		major, err1 := strconv.ParseUint(string(id[0]), 16, 32)
		minor, err2 := strconv.ParseUint(string(id[1]), 16, 32)
		ino, err3 := strconv.ParseUint(string(id[2]), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		set[[2]uint64{major<<20 | minor, ino}] = true
	}
	return set
}

// held reports whether the lock file fi is locked by some process.
func (s lockSet) held(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	dev := uint64(st.Dev)
	return s[[2]uint64{uint64(unix.Major(dev))<<20 | uint64(unix.Minor(dev)), st.Ino}]
}

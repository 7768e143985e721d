package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockHeld reports whether a process holds the flock on the lock file at
// path, without taking it: trying the lock would make a job that starts in
// that instant fail with ErrLocked. Linux lists every lock in /proc/locks,
// by device and inode.
func lockHeld(path string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, nil
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return false, fmt.Errorf("is %s locked: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter has
		// "->" after the number.
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" {
			continue
		}
		if fields[5] == want || sameInode(fields[5], major, minor, st.Ino) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// sameInode compares a "major:minor:inode" field read as numbers, in case
// the kernel pads them differently.
func sameInode(field string, major, minor, ino uint64) bool {
	parts := strings.Split(field, ":")
	if len(parts) != 3 {
		return false
	}
	ma, err1 := strconv.ParseUint(parts[0], 16, 64)
	mi, err2 := strconv.ParseUint(parts[1], 16, 64)
	in, err3 := strconv.ParseUint(parts[2], 10, 64)
	return err1 == nil && err2 == nil && err3 == nil && ma == major && mi == minor && in == ino
}

package checkpoint

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// vmFlags returns the VmFlags line of /proc/self/smaps for the mapping that
// starts at addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	start := fmt.Sprintf("%x-", addr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, start) {
			in = true
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return line
		}
	}
	t.Fatalf("no mapping at %x in /proc/self/smaps", addr)
	return ""
}

// Open's table chunks ask for huge pages (hg); a growth's chunks, first
// written inside a save, refuse them (nh): a huge page's first fault may
// compact memory in the faulting thread, which made saves of 71 ms while a
// checkpoint grew to 20M keys.
func TestTableChunksHugePagesForOpenOnly(t *testing.T) {
	for _, tt := range []struct {
		huge bool
		flag string
	}{{true, " hg"}, {false, " nh"}} {
		m := &tableMem{}
		b, mapping := m.alloc(tableChunkBytes, tt.huge)
		if b == nil {
			t.Fatal("no mapped chunk on Linux")
		}
		flags := vmFlags(t, uintptr(unsafe.Pointer(unsafe.SliceData(mapping))))
		if !strings.Contains(flags, tt.flag) {
			t.Errorf("huge=%v: %q lacks%s", tt.huge, flags, tt.flag)
		}
		m.freeAll()
	}
}

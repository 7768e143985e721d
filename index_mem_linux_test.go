package checkpoint

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// smapsField returns the line of /proc/self/smaps that starts with field
// (such as "VmFlags:" or "Rss:") for the mapping that starts at addr.
func smapsField(t *testing.T, addr uintptr, field string) string {
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
		if in && strings.HasPrefix(line, field) {
			return line
		}
	}
	t.Fatalf("no mapping at %x in /proc/self/smaps", addr)
	return ""
}

// vmFlags returns the VmFlags line of /proc/self/smaps for the mapping that
// starts at addr.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	return smapsField(t, addr, "VmFlags:")
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

// TestOpenTablePrefaulted: an index sized for Open (several table chunks)
// has every page of every chunk resident before the first upsert (prefault,
// on every core), for both kinds of table; a growth's chunk is allocated
// when first written, and not touched.
func TestOpenTablePrefaulted(t *testing.T) {
	t.Run("key table", func(t *testing.T) {
		codec, err := newKeyCodec[int64]()
		require.NoError(t, err)
		x := newIndex(codec.hash, 3*tableChunkBytes/16)
		defer x.reset(0)
		requireResident(t, &x.kcur)
	})
	t.Run("word table", func(t *testing.T) {
		codec, err := newKeyCodec[string]()
		require.NoError(t, err)
		x := newIndex(codec.hash, 3*tableChunkBytes/8)
		defer x.reset(0)
		requireResident(t, &x.cur)
	})
	t.Run("growth", func(t *testing.T) {
		tb := newTable[uint64](3*tableChunkBytes/8, false, &tableMem{})
		defer tb.mem.freeAll()
		for _, c := range tb.chunks {
			require.Nil(t, c, "a growth's chunks wait for their first write")
		}
	})
}

// requireResident checks that every page of each chunk is resident
// (mincore).
func requireResident[S any](t *testing.T, tb *table[S]) {
	t.Helper()
	require.Greater(t, len(tb.chunks), 2, "several chunks")
	vec := make([]byte, tableChunkBytes/os.Getpagesize())
	for c, chunk := range tb.chunks {
		require.NotNil(t, tb.maps[c], "chunk %d mapped", c)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(chunk))), tableChunkBytes)
		_, _, errno := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
		require.Zero(t, errno, "mincore")
		for p, v := range vec {
			require.NotZero(t, v&1, "chunk %d page %d resident", c, p)
		}
	}
}

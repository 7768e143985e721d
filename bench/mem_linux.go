package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
)

// outsideGo is the anonymous memory the process holds that the Go runtime
// did not map: the index's tables, which Linux gets as huge pages mapped
// apart from the heap (the library's tableMem), so that the heap figures
// alone would leave them out. It is the resident anonymous memory
// (/proc/self/status RssAnon) less what the runtime has mapped and not
// given back; call it after heapLive, which collects. ok is false if it
// cannot be read.
func outsideGo() (bytes int64, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var rssAnon int64 = -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, found := bytesCut(sc.Bytes(), "RssAnon:"); found {
			kb, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return 0, false
			}
			rssAnon = kb << 10
		}
	}
	if rssAnon < 0 {
		return 0, false
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	goResident := int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
	return rssAnon - goResident, true
}

// bytesCut returns the number in a /proc line "Name:   123 kB".
func bytesCut(line []byte, name string) ([]byte, bool) {
	rest, found := bytes.CutPrefix(line, []byte(name))
	if !found {
		return nil, false
	}
	rest = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))
	return rest, true
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzServeResultsPage feeds arbitrary journals and cursors to the results
// pages and to the progress sampler: no panic, pages move forward, every
// item lies at or after the cursor, and the sampler's counts never fall.
func FuzzServeResultsPage(f *testing.F) {
	f.Add([]byte(`{"key": "1", "result": {"a": 1}, "timestamp": "2026-01-07T12:34:58.123490"}`+"\n"+`{"key":2,"result":"x","timestamp":"2026-01-07T12:34:58.123490+00:00"}`+"\n"), int64(5), "a")
	f.Add([]byte("garbage\n\n{\"key\":\n{\"key\":1,\"result\":1}"), int64(-3), "")
	f.Add([]byte(`{"key":"a\nb","result":null,"timestamp":"x"}`), int64(1<<40), `"`)
	f.Fuzz(func(t *testing.T, journal []byte, cursor int64, q string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f"+resultsSuffix), journal, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := newFSSource(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p, err := src.Results(ctx, "f", resultsQuery{Cursor: cursor, Limit: 3, Search: q})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			if it.Offset < p.Cursor {
				t.Fatalf("item at %d before the cursor %d", it.Offset, p.Cursor)
			}
		}
		if p.Next != -1 && p.Next <= p.Cursor {
			t.Fatalf("next %d does not move past %d", p.Next, p.Cursor)
		}
		pts, _ := src.progress("f")
		for i := 1; i < len(pts); i++ {
			if pts[i].N < pts[i-1].N {
				t.Fatalf("progress fell: %v", pts)
			}
		}
	})
}

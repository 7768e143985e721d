package checkpoint

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type kibState struct {
	Blob string `json:"blob"`
	N    int    `json:"n"`
}

// BenchmarkFlowStep measures the overhead of a step that does nothing, with
// a state of 1 KiB, against one atomic write of that state (temporary file,
// fsync, rename, fsync of the folder) on the same disk, measured turn by
// turn in the same loop. ratio is step/write; the goal is at most 2.
//
//	go test -run '^$' -bench BenchmarkFlowStep -benchtime 20x .
func BenchmarkFlowStep(b *testing.B) {
	const steps = 16
	dir := b.TempDir()
	f, err := NewFlow[kibState]("bench", WithDir(dir), WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for i := range steps {
		f.Step("step"+string(rune('a'+i)), func(context.Context, *kibState) error { return nil })
	}
	state := kibState{Blob: strings.Repeat("x", 1000)}
	one, err := marshalState(state)
	if err != nil {
		b.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.json")
	var flowTime, writeTime time.Duration
	ctx := context.Background()
	for b.Loop() {
		t0 := time.Now()
		for range steps {
			if err := writeFileAtomic(plain, one, os.Rename); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		if _, err := f.Run(ctx, state, Restart()); err != nil {
			b.Fatal(err)
		}
		flowTime += time.Since(t1)
		writeTime += t1.Sub(t0)
	}
	n := float64(b.N * steps)
	b.ReportMetric(float64(flowTime.Nanoseconds())/n, "ns/step")
	b.ReportMetric(float64(writeTime.Nanoseconds())/n, "ns/write")
	b.ReportMetric(float64(flowTime)/float64(writeTime), "ratio")
	b.ReportMetric(float64(len(one)), "state-bytes")
}

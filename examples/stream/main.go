// Command stream processes a large input without loading it: the items come
// from an iter.Seq that reads a file line by line, and the checkpoint keeps
// only a few bytes per key, never the results: memory grows with the number
// of keys, by tens of bytes each, not with the input or the results.
//
// The first run writes a sample input of 500,000 lines to the checkpoint
// folder. Stop it with Ctrl-C and run it again to see it resume.
//
//	go run ./examples/stream
//	go run ./examples/stream -input big.tsv   # your own "id<TAB>text" lines
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"iter"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

type Line struct {
	ID   string
	Text string
}

func main() {
	dir := flag.String("dir", "checkpoints", "folder for the checkpoint files")
	input := flag.String("input", "", `input file of "id<TAB>text" lines (default: a generated sample)`)
	fresh := flag.Bool("fresh", false, "delete the checkpoint and start from zero")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if *input == "" {
		*input = filepath.Join(*dir, "stream_input.tsv")
		if err := writeSample(*input, 500_000); err != nil {
			log.Fatal(err)
		}
	}
	f, err := os.Open(*input)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	opts := []checkpoint.Option{checkpoint.WithDir(*dir)}
	if *fresh {
		opts = append(opts, checkpoint.WithFresh())
	}
	runner, err := checkpoint.Open[string, Line]("stream", opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer runner.Close()

	lines, readErr := readLines(f)
	start := time.Now()
	did := 0
	for line := range runner.IterateSeq(lines, func(l Line) string { return l.ID }) {
		if ctx.Err() != nil {
			fmt.Println("interrupted: run it again to resume")
			break
		}
		words := len(strings.Fields(line.Text))
		if err := runner.SaveResult(line.ID, map[string]int{"words": words}); err != nil {
			log.Fatal(err)
		}
		if did++; did%100_000 == 0 {
			report("", runner)
		}
	}
	if err := *readErr; err != nil {
		log.Fatal(err)
	}
	if err := runner.Err(); err != nil {
		log.Fatal(err)
	}
	report(fmt.Sprintf("this run: %d lines in %v; ", did, time.Since(start).Round(time.Millisecond)), runner)
}

// readLines streams a file's lines as items. The error, if any, is in *err
// once the loop is over.
func readLines(f *os.File) (iter.Seq[Line], *error) {
	var err error
	return func(yield func(Line) bool) {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			id, text, _ := strings.Cut(sc.Text(), "\t")
			if !yield(Line{ID: id, Text: text}) {
				return
			}
		}
		err = sc.Err()
	}, &err
}

func report(prefix string, runner *checkpoint.Runner[string, Line]) {
	var m runtime.MemStats
	runtime.GC() // count live memory, not garbage waiting to be collected
	runtime.ReadMemStats(&m)
	done, seen := runner.Progress()
	fmt.Printf("%s%d done of %d lines read, heap %d MiB\n", prefix, done, seen, m.HeapAlloc>>20)
}

func writeSample(path string, n int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "doc-%07d\tthe quick brown fox number %d jumps over %d lazy dogs\n", i, i, i%13)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

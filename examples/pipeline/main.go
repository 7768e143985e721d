// Command pipeline runs three steps over 100 documents (enrich, generate,
// postprocess), each step resumable on its own, under one pipeline.
//
//	go run ./examples/pipeline -crash-at 42   # dies (SIGKILL) in the middle of generate
//	go run ./examples/pipeline                # resumes: reports what was in flight, finishes
//	go run ./examples/pipeline                # nothing left to do: the summary per step
//	go run ./examples/pipeline -reset-checkpoint   # from zero, the old files in a .bak folder
//	go run ./examples/pipeline -no-checkpoint      # everything, nothing read or written
//
// Step 2 (generate) takes step 1's results as input, and step 3 step 2's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"iter"
	"log"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

type Doc struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

type Enriched struct {
	Doc
	Words int `json:"words"`
}

func main() {
	dir := flag.String("dir", "checkpoints", "folder for the checkpoint files")
	crashAt := flag.Int("crash-at", -1, "kill the process (SIGKILL) when generate reaches this document")
	options := checkpoint.AddFlags(flag.CommandLine)
	flag.Parse()

	p, err := checkpoint.OpenPipeline[int]("docs", append(options(), checkpoint.WithDir(*dir))...)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	printSummary(p, "at start")

	enrich, err := checkpoint.PipelineStep[int, Doc](p, "enrich")
	if err != nil {
		log.Fatal(err)
	}
	generate, err := checkpoint.PipelineStep[int, Enriched](p, "generate")
	if err != nil {
		log.Fatal(err)
	}
	post, err := checkpoint.PipelineStep[int, Enriched](p, "postprocess")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range generate.Crashed() {
		fmt.Printf("generate: document %d was in flight when the last run died (crash %d)\n", c.Key, c.Crashes)
	}
	ctx := context.Background()
	byID := func(d Doc) int { return d.ID }

	// Step 1: enrich every document.
	s1, err := enrich.Process(ctx, docs(100), byID, func(ctx context.Context, d Doc) (any, error) {
		time.Sleep(2 * time.Millisecond)
		return Enriched{Doc: d, Words: len(strings.Fields(d.Text))}, nil
	}, checkpoint.WithWorkers(8))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("enrich:      %d done now, %d skipped\n", s1.Succeeded, s1.Skipped)

	// Step 2: generate from step 1's results.
	s2, err := generate.Process(ctx, results[Enriched](enrich), func(e Enriched) int { return e.ID },
		func(ctx context.Context, e Enriched) (any, error) {
			if e.ID == *crashAt {
				killSelf() // as an OOM kill would
			}
			time.Sleep(20 * time.Millisecond) // the slow model call
			return Enriched{Doc: Doc{ID: e.ID, Text: strings.ToUpper(e.Text)}, Words: e.Words}, nil
		}, checkpoint.WithWorkers(4))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("generate:    %d done now, %d skipped\n", s2.Succeeded, s2.Skipped)

	// Step 3: postprocess step 2's results, in a plain loop.
	n := 0
	for e := range post.IterateSeq(results[Enriched](generate), func(e Enriched) int { return e.ID }) {
		if err := post.SaveResult(e.ID, fmt.Sprintf("%d words: %.20s", e.Words, e.Text)); err != nil {
			log.Fatal(err)
		}
		n++
	}
	if err := post.Err(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("postprocess: %d done now\n", n)
	printSummary(p, "at end")
}

func printSummary(p *checkpoint.Pipeline[int], when string) {
	sum, err := p.Summary()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("summary %s:\n", when)
	if len(sum) == 0 {
		fmt.Println("  (no steps yet)")
	}
	for _, s := range sum {
		fmt.Printf("  %-12s completed %3d  failed %d  in flight at last crash %d  total %d\n",
			s.Step, s.Completed, s.Failed, s.InFlight, s.Total)
	}
}

// results streams a step's results as the next step's items.
func results[T any, K comparable, I any](r *checkpoint.Runner[K, I]) iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, raw := range r.AllResults() {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				log.Fatal(err)
			}
			if !yield(v) {
				return
			}
		}
		if err := r.Err(); err != nil {
			log.Fatal(err)
		}
	}
}

func docs(n int) iter.Seq[Doc] {
	return func(yield func(Doc) bool) {
		for i := range n {
			if !yield(Doc{ID: i, Text: fmt.Sprintf("document number %d about topic %d", i, i%7)}) {
				return
			}
		}
	}
}

// Command basic is the README's first example: it labels 300 short texts
// with a flaky, slow fake API, saving each result or error as it goes.
//
// Run it, then run it again: the second run skips what is done and retries
// only the failures. Stop it with Ctrl-C (or kill -9) at any moment and run
// it again: nothing that was saved is lost or done twice.
//
//	go run ./examples/basic          # resume (or start)
//	go run ./examples/basic -fresh   # start from zero
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

type Text struct {
	ID   int
	Body string
}

type Label struct {
	Sentiment string  `json:"sentiment"`
	Score     float64 `json:"score"`
}

func main() {
	fresh := flag.Bool("fresh", false, "delete the checkpoint and start from zero")
	dir := flag.String("dir", "checkpoints", "folder for the checkpoint files")
	flag.Parse()

	opts := []checkpoint.Option{checkpoint.WithDir(*dir)}
	if *fresh {
		opts = append(opts, checkpoint.WithFresh())
	}
	runner, err := checkpoint.Open[int, Text]("basic", opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer runner.Close()

	texts := makeTexts(300)
	if done, _ := runner.Progress(); done > 0 {
		fmt.Printf("resuming: %d of %d already done\n", done, len(texts))
	}

	start := time.Now()
	var did, failed int
	for text := range runner.Iterate(texts, func(t Text) int { return t.ID }) {
		label, err := classify(text)
		if err != nil {
			failed++
			if err := runner.SaveError(text.ID, err); err != nil {
				log.Fatal(err)
			}
			continue
		}
		if err := runner.SaveResult(text.ID, label); err != nil {
			log.Fatal(err)
		}
		did++
	}
	if err := runner.Err(); err != nil {
		log.Fatal(err)
	}

	done, total := runner.Progress()
	fmt.Printf("this run: %d labelled, %d failed in %v\n", did, failed, time.Since(start).Round(time.Millisecond))
	fmt.Printf("overall:  %d/%d done\n", done, total)

	failures := runner.AllErrors()
	for i, f := range failures {
		if i == 5 {
			fmt.Printf("  ... and %d more\n", len(failures)-5)
			break
		}
		fmt.Printf("  text %d failed: %s (attempts: %d)\n", f.Key, f.Error, f.Attempts)
	}
	if len(failures) > 0 {
		fmt.Println("run it again to retry the failures")
		return
	}
	fmt.Printf("all done: results are in %s/basic_results.jsonl\n", *dir)
}

func makeTexts(n int) []Text {
	words := []string{"great", "awful", "fine", "slow", "lovely", "broken", "fast", "meh"}
	texts := make([]Text, n)
	for i := range texts {
		texts[i] = Text{ID: i + 1, Body: words[i%len(words)] + " " + words[(i*7)%len(words)]}
	}
	return texts
}

var errRateLimited = errors.New("429 too many requests")

// classify stands in for a slow remote call that fails now and then.
func classify(t Text) (Label, error) {
	time.Sleep(5 * time.Millisecond)
	if rand.IntN(100) < 12 {
		return Label{}, errRateLimited
	}
	score := 0.5
	for _, w := range strings.Fields(t.Body) {
		switch w {
		case "great", "lovely", "fast":
			score += 0.25
		case "awful", "broken", "slow":
			score -= 0.25
		}
	}
	sentiment := "neutral"
	if score > 0.5 {
		sentiment = "positive"
	} else if score < 0.5 {
		sentiment = "negative"
	}
	return Label{Sentiment: sentiment, Score: score}, nil
}

// Command servejob is a slow job on the checkpoint library for the tests of
// checkpoint serve: it saves one record every -every until -n items are done
// or -max has passed, so the view has a running job to watch (and the tests
// one to kill). It prints "saving" once its first record is saved.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

func main() {
	dir := flag.String("dir", "", "checkpoint folder")
	name := flag.String("name", "live", "checkpoint name")
	n := flag.Int("n", 100000, "items")
	every := flag.Duration("every", 20*time.Millisecond, "time between saves")
	pad := flag.Int("pad", 0, "bytes of padding per result (large records tear when killed)")
	maxTime := flag.Duration("max", time.Minute, "stop after this long whatever happens")
	flag.Parse()

	r, err := checkpoint.Open[int, int](*name, checkpoint.WithDir(*dir),
		checkpoint.WithParams(map[string]any{"model": "gpt-4o-mini", "batch": 16}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer r.Close()
	items := make([]int, *n)
	for i := range items {
		items[i] = i
	}
	deadline := time.Now().Add(*maxTime)
	first := true
	for it := range r.Iterate(items, func(i int) int { return i }) {
		if time.Now().After(deadline) {
			break
		}
		if it%13 == 7 {
			err = r.SaveError(it, fmt.Errorf("upstream 503 for request %x", it*7919))
		} else {
			err = r.SaveResult(it, map[string]any{"item": it, "score": float64(it%100) / 100, "pad": strings.Repeat("x", *pad)})
		}
		if err != nil && !errors.Is(err, checkpoint.ErrClosed) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if first {
			fmt.Println("saving")
			first = false
		}
		time.Sleep(*every)
	}
}

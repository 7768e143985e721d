package checkpoint_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/checkpoint-go/checkpoint"
)

// A job that dies half-way resumes where it stopped: the second run only
// does the item that failed.
func Example() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	items := []string{"apple", "banana", "cherry"}
	key := func(s string) string { return s }

	for run := 1; run <= 2; run++ {
		r, err := checkpoint.Open[string, string]("fruit", checkpoint.WithDir(dir),
			checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			fmt.Println(err)
			return
		}
		for item := range r.Iterate(items, key) {
			if item == "banana" && run == 1 {
				r.SaveError(item, errors.New("rate limited"))
				continue
			}
			r.SaveResult(item, strings.ToUpper(item))
			fmt.Printf("run %d: %s\n", run, item)
		}
		done, total := r.Progress()
		fmt.Printf("run %d: %d/%d done\n", run, done, total)
		r.Close()
	}
	// Output:
	// run 1: apple
	// run 1: cherry
	// run 1: 2/3 done
	// run 2: banana
	// run 2: 3/3 done
}

func ExampleRunner_AllErrors() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	r, _ := checkpoint.Open[int, int]("review", checkpoint.WithDir(dir))
	defer r.Close()

	for n := range r.Iterate([]int{1, 2, 3, 4}, func(n int) int { return n }) {
		if n%2 == 0 {
			r.SaveError(n, fmt.Errorf("%d is even", n))
			continue
		}
		r.SaveResult(n, n*n)
	}
	for _, f := range r.AllErrors() {
		fmt.Printf("key %d: %s (attempts: %d)\n", f.Key, f.Error, f.Attempts)
	}
	// Output:
	// key 2: 2 is even (attempts: 1)
	// key 4: 4 is even (attempts: 1)
}

func ExampleRunner_AllResults() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	r, _ := checkpoint.Open[string, string]("words", checkpoint.WithDir(dir))
	defer r.Close()

	r.SaveResult("go", map[string]int{"len": 2})
	r.SaveResult("gopher", map[string]int{"len": 6})
	r.SaveResult("go", map[string]int{"len": 2, "version": 2}) // the latest wins

	for key, raw := range r.AllResults() {
		fmt.Printf("%s: %s\n", key, raw)
	}
	if err := r.Err(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// gopher: {"len":6}
	// go: {"len":2,"version":2}
}

func ExampleRunner_Result() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	r, _ := checkpoint.Open[int, int]("answers", checkpoint.WithDir(dir))
	defer r.Close()

	type answer struct {
		Label string  `json:"label"`
		Score float64 `json:"score"`
	}
	r.SaveResult(7, answer{"cat", 0.93})

	var a answer
	found, err := r.Result(7, &a)
	fmt.Println(found, err, a.Label, a.Score)
	found, err = r.Result(8, &a)
	fmt.Println(found, err)
	// Output:
	// true <nil> cat 0.93
	// false <nil>
}

func ExampleRunner_IterateSeq() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	r, _ := checkpoint.Open[int, int]("stream", checkpoint.WithDir(dir))
	defer r.Close()
	r.SaveResult(2, "done in an earlier run")

	// Any iter.Seq works: lines of a file, rows of a query, a generator.
	numbers := func(yield func(int) bool) {
		for n := 1; n <= 4; n++ {
			if !yield(n) {
				return
			}
		}
	}
	for n := range r.IterateSeq(numbers, func(n int) int { return n }) {
		r.SaveResult(n, n*10)
		fmt.Println("did", n)
	}
	fmt.Println(r.Progress())
	// Output:
	// did 1
	// did 3
	// did 4
	// 4 4
}

func ExampleWithMaxAttempts() {
	dir, _ := os.MkdirTemp("", "checkpoint-example")
	defer os.RemoveAll(dir)
	items := []string{"flaky"}
	for run := 1; run <= 4; run++ {
		r, _ := checkpoint.Open[string, string]("retry", checkpoint.WithDir(dir),
			checkpoint.WithMaxAttempts(2), checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
		for item := range r.Iterate(items, func(s string) string { return s }) {
			fmt.Printf("run %d: trying %s\n", run, item)
			r.SaveError(item, errors.New("still down"))
		}
		r.Close()
	}
	// Output:
	// run 1: trying flaky
	// run 2: trying flaky
}

// Command cached calls a (simulated) LLM for 20 prompts from 8 goroutines,
// through a checkpoint.Cache: each prompt is paid for once, ever.
//
//	go run ./examples/cached   # first run: 20 calls (the duplicates share one)
//	go run ./examples/cached   # second run: 0 calls, every answer from disk
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// Request is what the model is asked: not a key by itself, so the cache
// keys it by a hash.
type Request struct {
	Model       string   `json:"model"`
	Messages    []string `json:"messages"`
	Temperature float64  `json:"temperature"`
}

type Reply struct {
	Text   string `json:"text"`
	Tokens int    `json:"tokens"`
}

var calls atomic.Int64

// complete stands for an HTTP call to a model: slow and paid for.
func complete(ctx context.Context, req Request) (Reply, error) {
	calls.Add(1)
	select {
	case <-time.After(50 * time.Millisecond):
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
	q := req.Messages[len(req.Messages)-1]
	return Reply{Text: "An answer to: " + q, Tokens: 7 + len(q)/4}, nil
}

func main() {
	dir := flag.String("dir", "checkpoints", "folder for the cache files")
	flag.Parse()

	llm, err := checkpoint.CachedBy("llm",
		func(r Request) string { return checkpoint.HashKey(r) },
		complete, checkpoint.WithDir(*dir))
	if err != nil {
		log.Fatal(err)
	}
	defer llm.Close()

	start := time.Now()
	var wg sync.WaitGroup
	var tokens atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			// Every goroutine asks all 20 questions: 160 requests, 20 distinct.
			for i := range 20 {
				req := Request{Model: "small-1", Messages: []string{"You are terse.", fmt.Sprintf("What is %d squared?", (i+w)%20)}}
				reply, err := llm.Get(context.Background(), req)
				if err != nil {
					log.Fatal(err)
				}
				tokens.Add(int64(reply.Tokens))
			}
		})
	}
	wg.Wait()
	fmt.Printf("160 requests, %d model calls, %d tokens, %v\n", calls.Load(), tokens.Load(), time.Since(start).Round(time.Millisecond))
}

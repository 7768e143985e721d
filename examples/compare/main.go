// Command compare is the README's model-A/model-B story: it runs the same
// 1,000 items through two simulated models, each in its own checkpoint with
// its parameters and an accuracy metric, then compares the two.
//
// The models differ on a known set of items: model B labels every 97th item
// differently, scores every item a little higher (by 0.001, within the
// tolerance used below), and times out on items 7, 257, 507 and 757, where
// model A succeeds. Model A times out on item 500, where B succeeds.
//
//	go run ./examples/compare                   # writes checkpoints/model-a and model-b
//	checkpoint compare model-a model-b --tolerance 0.01
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"strings"

	"github.com/checkpoint-go/checkpoint"
)

// An Answer is what a model says about an item.
type Answer struct {
	Label string  `json:"label"`
	Score float64 `json:"score"`
}

type model struct {
	name   string
	params map[string]any
	answer func(item int) (Answer, error)
}

var labels = []string{"cat", "dog", "bird"}

func modelA(item int) (Answer, error) {
	if item == 500 {
		return Answer{}, errors.New("timeout after 30s")
	}
	return Answer{Label: labels[item%3], Score: float64(item%10) / 10}, nil
}

func modelB(item int) (Answer, error) {
	if item%250 == 7 {
		return Answer{}, errors.New("timeout after 30s")
	}
	a := Answer{Label: labels[item%3], Score: float64(item%10)/10 + 0.001}
	if item%97 == 0 {
		a.Label = labels[(item+1)%3] // the known disagreements
	}
	return a, nil
}

func main() {
	dir := flag.String("dir", "checkpoints", "folder for the two checkpoints")
	flag.Parse()
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	for _, m := range []model{
		{"model-a", map[string]any{"model": "a-small", "temperature": 0}, modelA},
		{"model-b", map[string]any{"model": "b-large", "temperature": 0}, modelB},
	} {
		if err := evaluate(*dir, m, items); err != nil {
			log.Fatal(err)
		}
	}

	c, err := checkpoint.Compare(context.Background(),
		checkpoint.Ref{Dir: *dir, Name: "model-a"}, checkpoint.Ref{Dir: *dir, Name: "model-b"},
		checkpoint.WithTolerance(0.01))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("keys in both: %d, only in A: %d, only in B: %d\n", c.Both, c.OnlyA.Count, c.OnlyB.Count)
	fmt.Printf("completed in A, failed in B: %s\n", countOf(c.FailedOnlyInB))
	fmt.Printf("failed in A, completed in B: %s\n", countOf(c.FailedOnlyInA))
	fmt.Printf("results equal: %d, different: %d (scores within %g count as equal)\n", c.Equal, c.Different, c.Tolerance)
	for _, f := range c.Fields {
		var ex []string
		for _, e := range f.Examples {
			ex = append(ex, fmt.Sprintf("key %s: %s → %s", e.Key, e.A, e.B))
		}
		fmt.Printf("  %s differs for %d keys, e.g. %s\n", f.Field, f.Count, strings.Join(ex, "; "))
	}
	for _, p := range c.Params {
		if p.Differs {
			fmt.Printf("param %s: %s → %s\n", p.Name, p.A, p.B)
		}
	}
	for _, m := range c.Metrics {
		if m.Delta != nil {
			fmt.Printf("metric %s: %.3f → %.3f (%+.3f)\n", m.Name, *m.A, *m.B, *m.Delta)
		}
	}
}

// evaluate runs every item through model m in the checkpoint m.name,
// starting fresh, and logs the model's accuracy against model A's labels.
func evaluate(dir string, m model, items []int) error {
	r, err := checkpoint.Open[int, int](m.name, checkpoint.WithDir(dir), checkpoint.WithFresh(),
		checkpoint.WithParams(m.params))
	if err != nil {
		return err
	}
	correct, done := 0, 0
	for item := range r.Iterate(items, func(i int) int { return i }) {
		a, err := m.answer(item)
		if err != nil {
			if err := r.SaveError(item, err); err != nil {
				return err
			}
			continue
		}
		if err := r.SaveResult(item, a); err != nil {
			return err
		}
		done++
		if a.Label == labels[item%3] {
			correct++
		}
	}
	if err := r.LogMetrics(map[string]float64{"accuracy": float64(correct) / float64(len(items))}); err != nil {
		return err
	}
	return r.Close()
}

// countOf shows a category's count and its example keys, marking with "…"
// that Compare kept only a few of them (WithExamples).
func countOf(o checkpoint.Outcomes) string {
	var keys []string
	for _, e := range o.Examples {
		keys = append(keys, e.Key)
	}
	if len(keys) < o.Count {
		keys = append(keys, "…")
	}
	return fmt.Sprintf("%d (%s)", o.Count, strings.Join(keys, ", "))
}

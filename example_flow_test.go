package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/checkpoint-go/checkpoint"
)

// A flow whose second step fails on the first run: the second run skips the
// first step and starts the second from the state the first one saved.
func ExampleFlow() {
	dir, _ := os.MkdirTemp("", "flow")
	defer os.RemoveAll(dir)

	type State struct {
		Seed  int
		Trail []string
	}
	broken := true
	run := func() {
		flow, err := checkpoint.NewFlow[State]("train", checkpoint.WithDir(dir),
			checkpoint.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer flow.Close()
		for _, name := range []string{"download", "clean", "train"} {
			flow.Step(name, func(ctx context.Context, s *State) error {
				s.Trail = append(s.Trail, name) // lost if the step fails
				if name == "clean" && broken {
					return errors.New("bad row")
				}
				fmt.Println("ran", name, "from", s.Trail[:len(s.Trail)-1])
				return nil
			})
		}
		final, err := flow.Run(context.Background(), State{Seed: 1})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("final: %+v\n", final)
	}
	run()
	broken = false
	run()
	// Output:
	// ran download from []
	// checkpoint: flow "train": step "clean" failed: bad row
	// ran clean from [download]
	// ran train from [download clean]
	// final: {Seed:1 Trail:[download clean train]}
}

// Snapshots keep named values whole across crashes: JSON values with Save,
// large bytes streamed with Create.
func ExampleSnapshots() {
	dir, _ := os.MkdirTemp("", "snaps")
	defer os.RemoveAll(dir)
	snaps, err := checkpoint.OpenSnapshots(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	type Model struct{ Epoch int }
	if !snaps.Exists("model_epoch_5") {
		_ = snaps.Save("model_epoch_5", Model{Epoch: 5})
	}
	var m Model
	found, err := snaps.Load("model_epoch_5", &m)
	fmt.Println(found, err, m.Epoch)

	w, _ := snaps.Create("weights.bin")
	fmt.Fprint(w, "0123456789")
	_ = w.Close()
	list, _ := snaps.List()
	for _, info := range list {
		fmt.Println(info.Name, info.Kind, info.Size)
	}
	// Output:
	// true <nil> 5
	// model_epoch_5 json 11
	// weights.bin raw 10
}

package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// pipelineStatusJSON is status --json for a pipeline (NAME_pipeline.json)
// that has no checkpoint of its own name: one entry per step, in the order
// the steps were first opened.
type pipelineStatusJSON struct {
	Name    string           `json:"name"`
	Kind    string           `json:"kind"` // "pipeline"
	Running bool             `json:"running"`
	Steps   []pipelineStepJS `json:"steps"`
}

type pipelineStepJS struct {
	Step        string   `json:"step"`
	Checkpoint  string   `json:"checkpoint"` // NAME.STEP, for the other commands
	Completed   int      `json:"completed"`
	Failed      int      `json:"failed"`
	Total       int      `json:"total"`
	InFlight    int      `json:"in_flight"` // keys in flight when the last run died
	LastUpdated jsonTime `json:"last_updated"`
	Pending     bool     `json:"pending"` // listed, but no files yet
}

// printPipeline is status for a pipeline: each step's counts, read as
// Inspect reads a checkpoint, without any lock.
func printPipeline(e *env, name string, steps []string, asJSON bool) error {
	out := pipelineStatusJSON{Name: name, Kind: "pipeline", Steps: []pipelineStepJS{}}
	for _, step := range steps {
		s := pipelineStepJS{Step: step, Checkpoint: name + "." + step}
		v, err := checkpoint.Inspect(e.dir, s.Checkpoint)
		switch {
		case err == nil:
			in := v.Info()
			v.Close()
			s.Completed, s.Failed, s.Total, s.LastUpdated = in.Completed, in.Failed, in.Total, jsonTime(in.LastUpdated)
			out.Running = out.Running || in.Running
			fl, err := checkpoint.ReadInFlight(e.dir, s.Checkpoint)
			if err != nil {
				return err
			}
			if !in.Running {
				s.InFlight = len(fl.InFlight)
			}
		case errors.Is(err, checkpoint.ErrNoCheckpoint):
			s.Pending = true
		default:
			return err
		}
		out.Steps = append(out.Steps, s)
	}
	if asJSON {
		w := newJSONLines(e.stdout)
		w.put(out)
		return w.flush()
	}
	running := "no"
	if out.Running {
		running = "yes (a job holds the lock)"
	}
	fmt.Fprintf(e.stdout, "pipeline %s (in %s)\n  running  %s\n\n", name, e.dir, running)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tCOMPLETED\tFAILED\tTOTAL\tIN FLIGHT AT CRASH\tLAST UPDATE")
	now := time.Now()
	for _, s := range out.Steps {
		if s.Pending {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tnot started\n", s.Step)
			continue
		}
		total := "-"
		if s.Total > 0 {
			total = fmt.Sprint(s.Total)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\n", s.Step, s.Completed, s.Failed, total, s.InFlight,
			humanTime(time.Time(s.LastUpdated), now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\neach step is a checkpoint: checkpoint status %s.STEP --dir %s\n", name, e.dir)
	return nil
}

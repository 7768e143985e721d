package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/spf13/cobra"
)

type lsRow struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"` // "checkpoint", "flow" or "pipeline"
	Completed   int      `json:"completed"`
	Failed      int      `json:"failed"`
	Total       int      `json:"total"`
	LastUpdated jsonTime `json:"last_updated"`
	Running     bool     `json:"running"`
	Size        int64    `json:"size"`
}

func newLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the checkpoints in the folder",
		Long: `ls prints one row per checkpoint, flow and pipeline in the folder:
completed and failed keys, the last update, "running" when a job holds the
checkpoint's lock now (for a flow or a pipeline, while it is open; shown on
Linux, where the kernel lists locks), and the size of its files. A flow's
counts are its steps. A pipeline's are its steps' added up, as the web view
shows them; each of its steps also has a row of its own, NAME.STEP. It
never takes a lock.`,
		Example: `  checkpoint ls --dir checkpoints
  checkpoint ls --json | jq -r 'select(.failed > 0) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.db != "" {
				return e.lsPostgres(cmd.Context(), asJSON) // source_pg.go
			}
			list, err := names(e.dir)
			if err != nil {
				return err
			}
			var rows []lsRow
			var errs []error
			for _, name := range list {
				v, err := e.inspect(name)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				in := v.Info()
				v.Close()
				rows = append(rows, lsRow{in.Name, "checkpoint", in.Completed, in.Failed, in.Total, jsonTime(in.LastUpdated), in.Running, in.Size})
			}
			flows, err := flowRows(e.dir, rows)
			errs = append(errs, err)
			rows = append(rows, flows...)
			pipelines, err := pipelineRows(e.dir, rows)
			errs = append(errs, err)
			rows = append(rows, pipelines...)
			sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
			if asJSON {
				out := newJSONLines(e.stdout)
				for _, r := range rows {
					out.put(r)
				}
				if err := out.flush(); err != nil {
					return err
				}
			} else if len(rows) > 0 {
				now := time.Now()
				tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tCOMPLETED\tFAILED\tTOTAL\tLAST UPDATE\tRUNNING\tSIZE\t")
				for _, r := range rows {
					total, running := "-", ""
					if r.Total > 0 && r.Total >= r.Completed+r.Failed {
						total = fmt.Sprint(r.Total)
					}
					if r.Running {
						running = "running"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.Name, r.Kind, r.Completed, r.Failed, total,
						humanTime(time.Time(r.LastUpdated), now), running, humanSize(r.Size))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			} else if len(errs) == 0 {
				fmt.Fprintf(e.stderr, "no checkpoints in %s\n", e.dir)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line: name, kind, completed, failed, total, last_updated, running, size")
	return cmd
}

// flowRows lists the flows in dir (NAME_flow.json) that have no row yet:
// their counts are steps.
func flowRows(dir string, rows []lsRow) ([]lsRow, error) {
	return extraRows(dir, "_flow.json", rows, func(name string, r *lsRow) error {
		steps, err := checkpoint.ReadFlowSteps(dir, name)
		if err != nil {
			return err
		}
		r.Kind, r.Total = "flow", len(steps)
		var last time.Time
		for _, s := range steps {
			switch s.Status {
			case checkpoint.StepDone:
				r.Completed++
			case checkpoint.StepFailed:
				r.Failed++
			}
			for _, t := range []time.Time{s.Started, s.Finished} {
				if t.After(last) {
					last = t
				}
			}
		}
		r.LastUpdated = jsonTime(last)
		return nil
	})
}

// pipelineRows lists the pipelines in dir (NAME_pipeline.json) that have no
// row yet. rows must hold the checkpoints' rows: a pipeline's counts, last
// update and size are its steps' (each a checkpoint NAME.STEP) added up, as
// the web view adds them.
func pipelineRows(dir string, rows []lsRow) ([]lsRow, error) {
	byName := map[string]lsRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	return extraRows(dir, "_pipeline.json", rows, func(name string, r *lsRow) error {
		steps, err := checkpoint.ReadPipelineSteps(dir, name)
		if err != nil {
			return err
		}
		r.Kind = "pipeline"
		for _, step := range steps {
			s, ok := byName[name+"."+step] // absent: a step listed but not started
			if !ok {
				continue
			}
			r.Completed += s.Completed
			r.Failed += s.Failed
			r.Total += s.Total
			r.Size += s.Size
			if time.Time(s.LastUpdated).After(time.Time(r.LastUpdated)) {
				r.LastUpdated = s.LastUpdated
			}
		}
		return nil
	})
}

// extraRows makes a row for each NAME in dir with a file NAME+suffix and no
// row in rows yet, counted by count; it adds the size of that file, and is
// running while a process holds NAME.lock (flows and pipelines hold it while
// open, as a Runner does).
func extraRows(dir, suffix string, rows []lsRow, count func(name string, r *lsRow) error) ([]lsRow, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, r := range rows {
		has[r.Name] = true
	}
	var out []lsRow
	var errs []error
	locks := heldLocks()
	for _, ent := range entries {
		name, ok := strings.CutSuffix(ent.Name(), suffix)
		if !ok || name == "" || !ent.Type().IsRegular() || has[name] {
			continue
		}
		r := lsRow{Name: name}
		if err := count(name, &r); err != nil {
			errs = append(errs, err)
			continue
		}
		if fi, err := ent.Info(); err == nil {
			r.Size += fi.Size()
		}
		if fi, err := os.Stat(filepath.Join(dir, name+".lock")); err == nil {
			r.Running = locks.held(fi)
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

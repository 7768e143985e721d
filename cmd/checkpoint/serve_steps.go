package main

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/checkpoint-go/checkpoint"
)

// Flows and pipelines in the web view. A flow (NAME_flow.json) is read with
// the library's ReadFlowSteps; a pipeline (NAME_pipeline.json) is the list
// of its steps, each a checkpoint NAME.STEP of its own, shown with that
// checkpoint's row.

const (
	flowSuffix     = "_flow.json"
	pipelineSuffix = "_pipeline.json"
)

// kindOf is "flow", "pipeline" or "checkpoint".
func (s *fsSource) kindOf(name string) string {
	if fi, err := s.root.Stat(name + flowSuffix); err == nil && fi.Mode().IsRegular() {
		return "flow"
	}
	if fi, err := s.root.Stat(name + pipelineSuffix); err == nil && fi.Mode().IsRegular() {
		return "pipeline"
	}
	return "checkpoint"
}

func (s *fsSource) flowRow(name string) (experimentRow, []stepInfo) {
	r := experimentRow{Name: name, Kind: "flow"}
	steps, err := checkpoint.ReadFlowSteps(s.dir, name)
	if err != nil {
		r.Status, r.Note = "unreadable", err.Error()
		return r, nil
	}
	if fi, err := s.root.Stat(name + ".lock"); err == nil {
		r.Running = heldLocks().held(fi)
	}
	var out []stepInfo
	var last time.Time
	for _, st := range steps {
		r.Total++
		switch st.Status {
		case checkpoint.StepDone:
			r.Completed++
		case checkpoint.StepFailed:
			r.Failed++
		}
		for _, t := range []time.Time{st.Started, st.Finished} {
			if t.After(last) {
				last = t
			}
		}
		if !st.Started.IsZero() && (r.StartedAt == nil || st.Started.Before(*r.StartedAt)) {
			t := st.Started
			r.StartedAt = &t
		}
		status := st.Status
		if status == checkpoint.StepRunning && !r.Running {
			status = "interrupted" // its process died; the next Run redoes it
		}
		out = append(out, stepInfo{Name: st.Name, Status: status, Seconds: st.Duration.Seconds(),
			Attempts: st.Attempts, Error: st.Error})
	}
	if !last.IsZero() {
		r.LastUpdated = &last
	}
	if fi, err := s.root.Stat(name + flowSuffix); err == nil {
		r.SizeBytes = fi.Size()
	}
	s.addRuns(&r)
	return r, out
}

func (s *fsSource) pipelineRow(name string) (experimentRow, []stepInfo) {
	r := experimentRow{Name: name, Kind: "pipeline"}
	b, err := s.root.ReadFile(name + pipelineSuffix)
	var f struct {
		Steps []string `json:"steps"`
	}
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		r.Status, r.Note = "unreadable", "pipeline file: "+err.Error()
		return r, nil
	}
	if fi, err := s.root.Stat(name + ".lock"); err == nil {
		r.Running = heldLocks().held(fi)
	}
	var out []stepInfo
	for _, step := range f.Steps {
		sr := s.row(name + "." + step)
		st := stepInfo{Name: step, Complete: sr.Completed, Failed: sr.Failed, Total: sr.Total, Status: sr.Status}
		if sr.Status == "unreadable" && errors.Is(s.exists(name+"."+step), errNotFound) {
			st.Status = "pending" // no files yet
		}
		if sr.StartedAt != nil && sr.LastUpdated != nil {
			st.Seconds = sr.LastUpdated.Sub(*sr.StartedAt).Seconds()
		}
		if r.Running && sr.Status != "finished" && sr.Status != "failed" {
			st.Status = "running"
		}
		r.Completed += sr.Completed
		r.Failed += sr.Failed
		r.Total += sr.Total
		r.SizeBytes += sr.SizeBytes
		if sr.StartedAt != nil && (r.StartedAt == nil || sr.StartedAt.Before(*r.StartedAt)) {
			r.StartedAt = sr.StartedAt
		}
		if sr.LastUpdated != nil && (r.LastUpdated == nil || sr.LastUpdated.After(*r.LastUpdated)) {
			r.LastUpdated = sr.LastUpdated
		}
		out = append(out, st)
	}
	s.addRuns(&r)
	return r, out
}

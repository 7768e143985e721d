package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The web view reads everything through one small interface, so that the
// HTTP handlers and the page do not depend on where the numbers come from.
// Its implementation (serve_fs.go) reads the files read-only and never takes
// a checkpoint's lock; it calls the library's inspection functions where
// they exist.
type viewSource interface {
	// Experiments lists every checkpoint in the folder: the Experiments view
	// in one call.
	Experiments(ctx context.Context) ([]experimentRow, error)
	// Experiment is one checkpoint's row with its progress over time.
	Experiment(ctx context.Context, name string) (experimentDetail, error)
	// Failures groups the failed keys by message, most frequent first.
	Failures(ctx context.Context, name string) ([]failureGroup, error)
	// FailureList lists the failures whose message falls in group pattern
	// (every failure when pattern is empty), at most limit of them.
	FailureList(ctx context.Context, name, pattern string, limit int) ([]failure, error)
	// Results reads one page of the results journal starting at byte
	// offset cursor: no page reads more than its share of the file.
	Results(ctx context.Context, name string, q resultsQuery) (resultsPage, error)
	// Compare compares two or more experiments, the first as the base.
	Compare(ctx context.Context, names []string) (comparison, error)
}

// errNotFound is a name that is not a checkpoint in the folder: 404.
var errNotFound = errors.New("no such checkpoint")

// An experimentRow is one line of the Experiments table. Counts come from
// the meta file, refreshed by a running job about once a second.
type experimentRow struct {
	Name        string             `json:"name"`
	Kind        string             `json:"kind"`   // checkpoint, flow or pipeline
	Status      string             `json:"status"` // running, finished, failed (items), stopped, crashed, empty; unreadable
	Running     bool               `json:"running"`
	Completed   int64              `json:"completed"`
	Failed      int64              `json:"failed"`
	Total       int64              `json:"total"` // 0 when unknown
	Rate        float64            `json:"rate"`  // records a second over the last minute, when running
	ETASeconds  float64            `json:"eta_seconds,omitempty"`
	StartedAt   *time.Time         `json:"started_at,omitempty"`
	LastUpdated *time.Time         `json:"last_updated,omitempty"`
	SizeBytes   int64              `json:"size_bytes"`
	SideFiles   []string           `json:"side_files,omitempty"` // .torn, .corrupt
	Params      map[string]any     `json:"params,omitempty"`
	Metrics     map[string]float64 `json:"metrics,omitempty"`
	Note        string             `json:"note,omitempty"` // e.g. the meta file is unreadable
}

// experimentDetail is the one-experiment view.
type experimentDetail struct {
	experimentRow
	// Progress is the number of records (results and errors) saved by each
	// point in time, from the journals' timestamps; Sampled says it was
	// estimated from evenly spaced reads rather than every line.
	Progress []progressPoint `json:"progress"`
	Sampled  bool            `json:"sampled"`
	// Runs and MetricSeries come from the run history and metrics files.
	Runs         []runInfo                `json:"runs"`
	MetricSeries map[string][]metricPoint `json:"metric_series"`
	Steps        []stepInfo               `json:"steps,omitempty"`
}

type progressPoint struct {
	T time.Time `json:"t"`
	N int64     `json:"n"` // records saved up to T
}

type runInfo struct {
	ID        string             `json:"id"`
	Start     *time.Time         `json:"start,omitempty"`
	End       *time.Time         `json:"end,omitempty"`
	Ended     string             `json:"ended"` // finished, crashed, running
	Completed int64              `json:"completed"`
	Failed    int64              `json:"failed"`
	Rate      float64            `json:"rate"`
	Params    map[string]any     `json:"params,omitempty"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
}

type metricPoint struct {
	T     time.Time `json:"t"`
	Step  *int64    `json:"step,omitempty"`
	Value float64   `json:"v"`
}

// stepInfo is a step of a flow (Attempts, Error) or of a pipeline
// (counts of its checkpoint).
type stepInfo struct {
	Name     string  `json:"name"`
	Status   string  `json:"status"`
	Seconds  float64 `json:"seconds"`
	Complete int64   `json:"completed"`
	Failed   int64   `json:"failed"`
	Total    int64   `json:"total"`
	Attempts int     `json:"attempts,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// A failureGroup is the failures whose messages differ only in numbers, hex
// ids and quoted values.
type failureGroup struct {
	Pattern    string            `json:"pattern"`
	Count      int               `json:"count"`
	SampleKeys []json.RawMessage `json:"sample_keys"`
	Example    string            `json:"example"`
}

type failure struct {
	Key      json.RawMessage `json:"key"`
	Error    string          `json:"error"`
	Attempts int             `json:"attempts"`
	Time     *time.Time      `json:"time,omitempty"`
}

type resultsQuery struct {
	Cursor int64  // byte offset of the first line to read
	Limit  int    // results on the page
	Search string // substring of the key or the result; empty for all
}

type resultItem struct {
	Key    json.RawMessage `json:"key"`
	Result json.RawMessage `json:"result"`
	Time   string          `json:"time"`
	Offset int64           `json:"offset"`
}

// A resultsPage is Limit lines of the results journal from Cursor. Next is
// the cursor of the following page (-1 at the end); ScannedTo tells how far
// a search got when it stopped at its read budget. Unit says what Cursor,
// Size and ScannedTo count: "bytes" of a folder's journal, or "results" of
// a database's rows, so the page can say which.
type resultsPage struct {
	Items     []resultItem `json:"items"`
	Cursor    int64        `json:"cursor"`
	Next      int64        `json:"next"`
	Size      int64        `json:"size"`
	ScannedTo int64        `json:"scanned_to"`
	Unit      string       `json:"unit"`
}

const (
	unitBytes   = "bytes"
	unitResults = "results"
)

type comparison struct {
	Names   []string                   `json:"names"`
	Rows    []experimentRow            `json:"rows"`
	Params  []compareValue             `json:"params"`
	Metrics []compareValue             `json:"metrics"`
	Series  []map[string][]metricPoint `json:"series"`
	Keys    *keyComparison             `json:"keys,omitempty"` // first two only
	Note    string                     `json:"note,omitempty"`
}

// compareValue is one parameter or metric across the experiments compared.
type compareValue struct {
	Name   string `json:"name"`
	Values []any  `json:"values"`
	Differ bool   `json:"differ"`
	// Deltas of a metric against the first experiment.
	Deltas []*float64 `json:"deltas,omitempty"`
}

type keyComparison struct {
	OnlyA         int         `json:"only_a"`
	OnlyB         int         `json:"only_b"`
	Both          int         `json:"both"`
	DoneAFailedB  int         `json:"completed_a_failed_b"`
	FailedADoneB  int         `json:"failed_a_completed_b"`
	FailedBoth    int         `json:"failed_in_both"`
	Equal         int         `json:"equal"`
	Different     int         `json:"different"`
	Fields        []fieldDiff `json:"fields"`
	ExamplesOnlyA []string    `json:"examples_only_a"`
	ExamplesOnlyB []string    `json:"examples_only_b"`
}

type fieldDiff struct {
	Field    string    `json:"field"`
	Count    int       `json:"count"`
	Examples []keyDiff `json:"examples"`
}

type keyDiff struct {
	Key string          `json:"key"`
	A   json.RawMessage `json:"a"`
	B   json.RawMessage `json:"b"`
}

// timeOrNil is t as an optional JSON time: nil (null) when t is unknown.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

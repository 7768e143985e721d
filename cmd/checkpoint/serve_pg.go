package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/checkpoint-go/checkpoint"
	"github.com/checkpoint-go/checkpoint/postgres"
)

// pgSource is the viewSource over the checkpoints of a Postgres database
// (serve --dir postgres://… or --db): the Experiments table, one
// experiment's counts and progress, its failures and its results, from the
// read-only postgres.Reader. A database keeps no run history, metrics or
// total, so those stay empty; Compare shows the rows side by side.
//
// The counts of every checkpoint take one scan of the items table, so the
// table is remade at most every second, and no more often than ten times
// what the last scan took: a page polling a large database does not keep
// it busy. A pgSource is safe for concurrent use; Close closes its
// connections.
type pgSource struct {
	r *postgres.Reader

	mu   sync.Mutex
	rows []experimentRow
	at   time.Time
	took time.Duration
}

// closingSource is a viewSource with connections or files to let go of.
type closingSource interface {
	viewSource
	Close() error
}

// openSource opens the web view's source: the folder dir, or the database.
func (e *env) openSource(ctx context.Context, dir string) (closingSource, error) {
	if e.db == "" {
		return newFSSource(dir)
	}
	r, err := e.reader(ctx)
	if err != nil {
		return nil, err
	}
	return &pgSource{r: r}, nil
}

func (s *pgSource) Close() error {
	s.r.Close()
	return nil
}

func rowOf(sum postgres.Summary) experimentRow {
	r := experimentRow{Name: sum.Name, Kind: "checkpoint", Running: sum.Running(),
		Completed: sum.Completed, Failed: sum.Failed, SizeBytes: sum.Bytes}
	r.StartedAt, r.LastUpdated = timeOrNil(sum.Created), timeOrNil(sum.LastUpdated)
	if r.Running {
		r.Rate = sum.Rate()
	}
	r.Status = statusOf(r, false)
	return r
}

func (s *pgSource) Experiments(ctx context.Context) ([]experimentRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rows != nil && time.Since(s.at) < max(time.Second, 10*s.took) {
		return slices.Clone(s.rows), nil
	}
	start := time.Now()
	list, err := s.r.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]experimentRow, 0, len(list))
	for _, sum := range list {
		rows = append(rows, rowOf(sum))
	}
	s.rows, s.at, s.took = rows, time.Now(), time.Since(start)
	return slices.Clone(rows), nil
}

// notFound turns the Reader's missing checkpoint into the view's 404.
func notFound(name string, err error) error {
	if errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return fmt.Errorf("%w: %q", errNotFound, name)
	}
	return err
}

func (s *pgSource) Experiment(ctx context.Context, name string) (experimentDetail, error) {
	sum, err := s.r.Checkpoint(ctx, name)
	if err != nil {
		return experimentDetail{}, notFound(name, err)
	}
	d := experimentDetail{experimentRow: rowOf(sum), Runs: []runInfo{}, MetricSeries: map[string][]metricPoint{},
		Progress: []progressPoint{}}
	d.Note = "kept in Postgres: no run history, metrics or total"
	pts, err := s.r.Progress(ctx, name, maxPoints)
	if err != nil {
		return d, notFound(name, err)
	}
	for _, p := range pts {
		d.Progress = append(d.Progress, progressPoint{T: p.Time, N: p.N})
	}
	return d, nil
}

// failures calls fn with the failures of name until it returns false.
func (s *pgSource) failures(ctx context.Context, name string, fn func(checkpoint.BackendFailure) bool) error {
	err := s.r.Failures(ctx, name, func(f checkpoint.BackendFailure) error {
		if !fn(f) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return notFound(name, err)
}

func (s *pgSource) Failures(ctx context.Context, name string) ([]failureGroup, error) {
	groups := failureGroups{}
	err := s.failures(ctx, name, func(f checkpoint.BackendFailure) bool {
		groups.add(json.RawMessage(f.Key), f.Error)
		return true
	})
	if err != nil {
		return nil, err
	}
	return groups.sorted(), nil
}

func (s *pgSource) FailureList(ctx context.Context, name, pattern string, limit int) ([]failure, error) {
	out := []failure{}
	err := s.failures(ctx, name, func(f checkpoint.BackendFailure) bool {
		if pattern == "" || errorPattern(f.Error) == pattern {
			t := f.Time
			out = append(out, failure{Key: json.RawMessage(f.Key), Error: f.Error, Attempts: f.Attempts, Time: &t})
		}
		return len(out) < limit
	})
	return out, err
}

// Results pages through the results in key order (the primary key's, so a
// page costs no sort of every result). The cursor is the number of results
// before the page; Size is the number of results, ScannedTo the position
// after the page.
func (s *pgSource) Results(ctx context.Context, name string, q resultsQuery) (resultsPage, error) {
	limit := q.Limit
	if limit <= 0 || limit > maxPageLimit {
		limit = 50
	}
	from := max(q.Cursor, 0)
	page := resultsPage{Items: []resultItem{}, Cursor: from, Next: -1, Unit: unitResults}
	n := int64(0)
	err := s.r.Results(ctx, name, postgres.ResultQuery{Offset: int(from), Limit: limit + 1, Search: q.Search, ByKey: true},
		func(r postgres.Result) error {
			n++
			if n > int64(limit) {
				page.Next = from + int64(limit)
				return nil
			}
			page.Items = append(page.Items, resultItem{Key: json.RawMessage(string(r.Key)), Result: json.RawMessage(string(r.Result)),
				Time: r.Time.Local().Format(time.RFC3339Nano), Offset: from + n - 1})
			return nil
		})
	if err != nil {
		return page, notFound(name, err)
	}
	page.ScannedTo = from + int64(len(page.Items))
	page.Size = page.ScannedTo
	if page.Next >= 0 {
		sum, err := s.r.Checkpoint(ctx, name)
		if err != nil {
			return page, notFound(name, err)
		}
		page.Size = max(sum.Completed, page.Next)
	}
	return page, nil
}

func (s *pgSource) Compare(ctx context.Context, names []string) (comparison, error) {
	c := comparison{Names: names, Params: []compareValue{}, Metrics: []compareValue{},
		Note: "kept in Postgres: the rows only (export both to folders to compare their keys and results)"}
	for _, n := range names {
		sum, err := s.r.Checkpoint(ctx, n)
		if err != nil {
			return c, notFound(n, err)
		}
		c.Rows = append(c.Rows, rowOf(sum))
		series := map[string][]metricPoint{}
		pts, err := s.r.Progress(ctx, n, maxPoints)
		if err != nil {
			return c, notFound(n, err)
		}
		for _, p := range pts {
			series["records"] = append(series["records"], metricPoint{T: p.Time, Value: float64(p.N)})
		}
		c.Series = append(c.Series, series)
	}
	return c, nil
}

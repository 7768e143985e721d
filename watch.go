package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Watch follows the checkpoint called name in dir from another process, as
// a job writes it, without taking its lock. It draws the job's progress on
// w as a BatchRunner does: a bar redrawn in place with the count, total,
// rate, ETA and failures if w is a terminal, else a line at most every
// interval. Each new failure is printed on its own line as it arrives.
//
// It returns nil when no job holds the lock and nothing new has arrived
// since the last look (at once for a checkpoint no job is running), or when
// ctx is done. It reads only what the job appends, so a look costs little
// however large the checkpoint.
func Watch(ctx context.Context, dir, name string, w io.Writer, interval time.Duration) error {
	v, err := inspect(dir, name, true) // text keys: whatever keys the job adds
	if err != nil {
		return err
	}
	defer func() { v.Close() }()
	wt := &watcher{v: v}
	total := int64(-1)
	if t := v.info.Total; t > 0 {
		total = int64(t)
	}
	out := newDisplay(w, interval, total)
	start := time.Now()
	before := int64(v.info.Completed + v.info.Failed)
	var meter rateMeter
	snap := func(at time.Time) snapshot {
		r := textRunner(wt.v.ix)
		done := int64(r.completed + r.failed)
		shown := total
		if shown < done {
			// The meta file's total lags (it is written about once a
			// second) or counts the items a streaming job has seen so far.
			shown = -1
		}
		s := snapshot{desc: name, total: shown, done: done, before: before, now: done - before,
			failed: int64(r.failed), elapsed: at.Sub(start), at: at}
		meter.sample(at.Sub(start), s.now)
		var ok bool
		if s.rate, ok = meter.rate(); !ok {
			s.rate = s.average()
		}
		return s
	}
	_, bar := out.(*barDisplay)
	out.start(snap(time.Now()))
	t := time.NewTicker(min(tick, interval))
	defer t.Stop()
	for {
		running, err := lockHeld(filepath.Join(dir, name+".lock"))
		if err != nil {
			return err
		}
		grew, failures, err := wt.poll()
		if err != nil {
			return err
		}
		if m, merr := readMeta(resolvePath(dir, name, filepath.Join(dir, name+"_meta.json"))); merr == nil && m.TotalItems > 0 && int64(m.TotalItems) != total && !bar {
			total = int64(m.TotalItems)
		}
		for _, f := range failures {
			line := fmt.Sprintf("failed %s (attempt %d): %s\n", KeyText(f.Key), f.Attempts, f.Error)
			if bar {
				line = "\r\x1b[K" + line // over the bar, which the next update redraws
			}
			_, _ = io.WriteString(w, line)
		}
		now := time.Now()
		if !running && !grew {
			out.finish(snap(now), true)
			return nil
		}
		out.update(snap(now))
		select {
		case <-ctx.Done():
			out.finish(snap(time.Now()), false)
			return nil
		case <-t.C:
		}
	}
}

// watcher keeps a View up to date with what a job appends.
type watcher struct {
	v     *View
	arena keyArena
}

// poll reads the whole lines appended to the journals since the last look,
// errors first (as Open does), and updates the counts. It returns whether
// anything was read and the failures read. If a journal was replaced (reset,
// compact) or cut (Clear), it inspects the checkpoint afresh.
func (wt *watcher) poll() (grew bool, failures []Failure[string], err error) {
	r := textRunner(wt.v.ix)
	for _, j := range []*journal{r.errors, r.results} {
		replaced, err := j.replaced()
		if err != nil {
			return false, nil, err
		}
		if replaced {
			fresh, err := inspect(wt.v.info.Dir, wt.v.info.Name, true)
			if err != nil {
				return false, nil, err
			}
			wt.v.Close()
			*wt.v = View{info: fresh.info, results: fresh.results, errors: fresh.errors, ix: fresh.ix}
			wt.arena = keyArena{}
			return true, nil, nil
		}
	}
	isResults := false
	for _, j := range []*journal{r.errors, r.results} {
		n, err := wt.tail(j, isResults, &failures)
		if err != nil {
			return false, nil, err
		}
		grew = grew || n > 0
		isResults = true
	}
	return grew, failures, nil
}

// replaced reports whether the file at j's path is no longer the one j
// reads, or is shorter than what was read.
func (j *journal) replaced() (bool, error) {
	fi, err := os.Stat(j.path)
	if j.f == nil {
		return err == nil, nil // created since
	}
	if err != nil {
		return true, nil
	}
	f, ok := j.f.(*os.File)
	if !ok {
		return false, nil
	}
	cur, err := f.Stat()
	if err != nil {
		return false, err
	}
	return !os.SameFile(fi, cur) || cur.Size() < j.size, nil
}

// tail reads j's new whole lines into the index and returns how many it read.
func (wt *watcher) tail(j *journal, isResults bool, failures *[]Failure[string]) (int, error) {
	if j.f == nil {
		return 0, nil
	}
	size, err := fileSize(j.f)
	if err != nil || size <= j.size {
		return 0, err
	}
	r := textRunner(wt.v.ix)
	n := 0
	var sc lineScanner
	end, err := sc.scan(j.f, j.size, size, func(off int64, _ int, line []byte) error {
		rec, ok := parseRecord(bytes.TrimSuffix(line, []byte{'\r'}))
		if !ok {
			return nil
		}
		k, err := r.keys.keep(rec.key, &wt.arena)
		if err != nil {
			return nil
		}
		n++
		sp := r.index.upsert(k)
		if isResults {
			switch s := *sp; {
			case s == 0:
				r.completed++
			case !s.done():
				if !r.resultIsNewer(off, s.offset()) {
					return nil
				}
				r.failed--
				r.completed++
			}
			*sp = sp.result(off)
			return nil
		}
		switch s := *sp; {
		case s == 0:
			r.failed++
		case s.done():
			r.completed--
			r.failed++
		}
		*sp = sp.failure(off)
		msg, ts := errorFields(line)
		*failures = append(*failures, Failure[string]{Key: string(rec.key), Error: msg, Attempts: sp.attempts(), Time: ts})
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("checkpoint: read %s: %w", j.path, err)
	}
	j.size = end
	return n, nil
}

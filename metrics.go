package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metrics. LogMetrics appends one line per call to NAME_metrics.jsonl:
//
//	{"run":"<run id>","time":"<ISO 8601>","step":3,"metrics":{"accuracy":0.91}}
//
// "step" is there only with AtStep. The line is built outside any lock and
// handed to the kernel in one write, without fsync: a metric is cheap to
// log, survives the death of the process once LogMetrics returns, and may be
// lost in a power cut.

// A MetricPoint is one logged value of a metric.
type MetricPoint struct {
	Run   string    `json:"run"` // the id of the run that logged it
	Time  time.Time `json:"time"`
	Step  *int64    `json:"step,omitempty"` // nil unless logged with AtStep
	Value float64   `json:"value"`
}

// A MetricOption qualifies the values given to LogMetrics. Its zero value
// does nothing.
type MetricOption struct {
	step    int64
	hasStep bool
}

// AtStep records the values as those of step n (an epoch, a batch...).
func AtStep(n int64) MetricOption {
	return MetricOption{step: n, hasStep: true}
}

// LogMetrics records values (by metric name) for the current run, with the
// time and, with AtStep, a step. It is cheap (the line is built in a pooled
// buffer without allocating, then handed to the kernel in one write, no
// fsync) and safe for concurrent use; what it recorded survives the death
// of the process. Values must be finite: JSON has no NaN or infinity.
func (r *Runner[K, T]) LogMetrics(values map[string]float64, opts ...MetricOption) error {
	return r.run.logMetrics(values, opts)
}

// Metrics reads back every value logged for this checkpoint, by every run,
// as a series per metric name in the order they were logged.
func (r *Runner[K, T]) Metrics() (map[string][]MetricPoint, error) {
	if r.runnerClosed() {
		return nil, ErrClosed
	}
	return ReadMetrics(r.dir, r.name)
}

// maxPooledMetricsLine is the largest buffer kept for reuse.
const maxPooledMetricsLine = 16 << 10

func (rl *runLog) logMetrics(values map[string]float64, opts []MetricOption) error {
	if rl == nil {
		return ErrClosed
	}
	var o MetricOption
	for _, opt := range opts {
		if opt.hasStep {
			o = opt
		}
	}
	bp, _ := rl.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	line, err := rl.appendMetricsLine((*bp)[:0], values, o, time.Now())
	if err == nil {
		err = rl.writeMetrics(line)
	}
	if cap(line) <= maxPooledMetricsLine {
		*bp = line
		rl.bufs.Put(bp)
	}
	return err
}

// writeMetrics writes one line to the metrics file, opening it first if
// this is the run's first.
func (rl *runLog) writeMetrics(line []byte) error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.done {
		return ErrClosed
	}
	if rl.metrics == nil {
		if err := rl.openMetrics(); err != nil {
			return err
		}
	}
	if _, err := rl.metrics.Write(line); err != nil {
		return fmt.Errorf("checkpoint: log metrics: %w", err)
	}
	return nil
}

// openMetrics opens the metrics file for appending. If a crash left its
// last line torn, a newline goes first, so the next line stands alone.
// rl.mu must be held.
func (rl *runLog) openMetrics() error {
	f, err := os.OpenFile(metricsPath(rl.dir, rl.name), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: log metrics: %w", err)
	}
	torn, err := endsTorn(f)
	if err == nil && torn {
		_, err = f.Write([]byte{'\n'})
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("checkpoint: log metrics: %w", err)
	}
	rl.metrics = f
	return nil
}

// appendMetricsLine appends the metrics line of values to b. It does not
// allocate (for up to 8 names).
func (rl *runLog) appendMetricsLine(b []byte, values map[string]float64, o MetricOption, now time.Time) ([]byte, error) {
	if len(values) == 0 {
		return b, errors.New("checkpoint: LogMetrics with no values")
	}
	b = append(b, `{"run":`...)
	b = appendJSONString(b, rl.id)
	b = append(b, `,"time":"`...)
	b = appendTimestamp(b, now)
	b = append(b, '"')
	if o.hasStep {
		b = append(b, `,"step":`...)
		b = strconv.AppendInt(b, o.step, 10)
	}
	b = append(b, `,"metrics":{`...)
	// Names in order, so that equal calls write equal lines. Few metrics go
	// in one call; a small array avoids an allocation for the common case.
	type namedValue struct {
		name string
		v    float64
	}
	var small [8]namedValue
	nv := small[:0]
	for name, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b, fmt.Errorf("checkpoint: metric %q is %v, which JSON cannot hold", name, v)
		}
		nv = append(nv, namedValue{name, v})
	}
	slices.SortFunc(nv, func(x, y namedValue) int { return strings.Compare(x.name, y.name) })
	for i, m := range nv {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.name)
		b = append(b, ':')
		b = strconv.AppendFloat(b, m.v, 'g', -1, 64)
	}
	return append(b, "}}\n"...), nil
}

// metricsLine is a line of the metrics file as read back.
type metricsLine struct {
	Run     string             `json:"run"`
	Time    string             `json:"time"`
	Step    *int64             `json:"step"`
	Metrics map[string]float64 `json:"metrics"`
}

// ReadMetrics reads every value logged for the checkpoint name in dir, as
// a series per metric name in the order they were logged. It takes no lock
// and is safe while a run logs more; a line torn by a crash is skipped. A
// checkpoint without metrics has an empty map and no error.
func ReadMetrics(dir, name string) (map[string][]MetricPoint, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(metricsPath(dir, name))
	series := make(map[string][]MetricPoint)
	if errors.Is(err, os.ErrNotExist) {
		return series, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for line := range bytes.Lines(b) {
		var l metricsLine
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		t, _ := parseTimestamp([]byte(l.Time))
		for metric, v := range l.Metrics {
			series[metric] = append(series[metric], MetricPoint{Run: l.Run, Time: t, Step: l.Step, Value: v})
		}
	}
	return series, nil
}

// latestMetrics is the last logged value of each metric.
func latestMetrics(series map[string][]MetricPoint) map[string]float64 {
	out := make(map[string]float64, len(series))
	for name, points := range series {
		if len(points) > 0 {
			out[name] = points[len(points)-1].Value
		}
	}
	return out
}

package checkpoint

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"math"
	"slices"
	"sync"
)

// A Comparison is what Compare found between two checkpoints, A and B:
// which keys each has, how their outcomes and results differ, and their
// latest runs' parameters and metrics side by side. Counts are of distinct
// keys, by each key's latest outcome. It marshals to JSON for scripts.
type Comparison struct {
	A         Side    `json:"a"`
	B         Side    `json:"b"`
	Tolerance float64 `json:"tolerance"` // numbers this close are equal

	Both  int    `json:"both"`   // keys with an outcome in both
	OnlyA KeySet `json:"only_a"` // keys with an outcome in A only
	OnlyB KeySet `json:"only_b"` // keys with an outcome in B only

	// Keys completed in both, by whether their results are equal.
	Equal     int `json:"equal"`
	Different int `json:"different"`
	// Fields counts, for each field of the results (a path such as
	// "label" or "scores.f1"; "" for a result that is not an object), the
	// keys whose results differ in it, most first.
	Fields []FieldDiff `json:"fields"`

	FailedOnlyInB Outcomes `json:"failed_only_in_b"` // completed in A, failed in B
	FailedOnlyInA Outcomes `json:"failed_only_in_a"` // failed in A, completed in B
	FailedInBoth  Outcomes `json:"failed_in_both"`

	Params  []ParamDiff  `json:"params"`  // of the latest run of each, by name
	Metrics []MetricDiff `json:"metrics"` // the latest value of each, by name
}

// Side describes one of the two checkpoints.
type Side struct {
	Ref
	Completed int  `json:"completed"`
	Failed    int  `json:"failed"`
	Run       *Run `json:"run,omitempty"` // its latest run, if it has a history
}

// A KeySet is a count of keys with a few of them.
type KeySet struct {
	Count     int      `json:"count"`
	Completed int      `json:"completed"` // of Count, those whose outcome is a result
	Failed    int      `json:"failed"`    // and those whose outcome is an error
	Examples  []string `json:"examples"`
}

// A FieldDiff is one field of the results and the keys that differ in it.
type FieldDiff struct {
	Field    string        `json:"field"`
	Count    int           `json:"count"`
	Examples []ValueChange `json:"examples"`
}

// A ValueChange is a key's value of a field in A and in B; nil where the
// result has no such field.
type ValueChange struct {
	Key string          `json:"key"`
	A   json.RawMessage `json:"a,omitempty"`
	B   json.RawMessage `json:"b,omitempty"`
}

// Outcomes counts keys whose outcome is a failure on one side or both,
// with a few examples.
type Outcomes struct {
	Count    int             `json:"count"`
	Examples []OutcomeChange `json:"examples"`
}

// An OutcomeChange is a key with its error in A, in B, or both.
type OutcomeChange struct {
	Key    string `json:"key"`
	ErrorA string `json:"error_a,omitempty"`
	ErrorB string `json:"error_b,omitempty"`
}

// A ParamDiff is one parameter of the latest runs of A and B (nil where a
// run has no such parameter). Name is "" when the parameters are not a JSON
// object.
type ParamDiff struct {
	Name    string          `json:"name"`
	A       json.RawMessage `json:"a,omitempty"`
	B       json.RawMessage `json:"b,omitempty"`
	Differs bool            `json:"differs"`
}

// A MetricDiff is the latest value of one metric in A and in B, and B-A.
// A value is nil where that side never logged the metric.
type MetricDiff struct {
	Name  string   `json:"name"`
	A     *float64 `json:"a"`
	B     *float64 `json:"b"`
	Delta *float64 `json:"delta"`
}

// Differs reports whether the two checkpoints differ in their keys, their
// outcomes or their results. Parameters and metrics are not counted: two
// experiments are expected to differ there.
func (c *Comparison) Differs() bool {
	return c.OnlyA.Count+c.OnlyB.Count+c.Different+c.FailedOnlyInA.Count+c.FailedOnlyInB.Count > 0
}

// A CompareOption configures Compare.
type CompareOption func(*compareOptions)

type compareOptions struct {
	tolerance float64
	examples  int
}

// WithTolerance makes numbers in results equal when they differ by at most
// t (an absolute difference). The default, 0, needs equal values; 1 and 1.0
// are equal either way.
func WithTolerance(t float64) CompareOption {
	return func(o *compareOptions) { o.tolerance = math.Abs(t) }
}

// WithExamples sets how many example keys Compare keeps per category and
// per field; the default is 3.
func WithExamples(n int) CompareOption {
	return func(o *compareOptions) { o.examples = max(n, 0) }
}

// Compare compares the checkpoints a and b, which may live in different
// folders and be written by this library or the Python one. It reads them
// without their locks, each as it is when Compare starts (a job may be
// running). It streams: its memory is about 16 bytes per key of each side
// (an index of hashes and offsets) however large the results. Keys are
// matched by value across key types that agree (the number 42 and the
// string "42" that Python writes for it); keys of types that cannot agree
// (numbers and words) fail with an error wrapping ErrKeyMismatch.
//
// Results compare as JSON: objects field by field (any order, any spacing),
// numbers within WithTolerance.
func Compare(ctx context.Context, a, b Ref, opts ...CompareOption) (*Comparison, error) {
	o := compareOptions{examples: 3}
	for _, opt := range opts {
		opt(&o)
	}
	seed := maphash.MakeSeed()
	var va, vb *lightView
	var erra, errb error
	var wg sync.WaitGroup
	wg.Go(func() { va, erra = openLightView(ctx, a, seed) })
	vb, errb = openLightView(ctx, b, seed)
	wg.Wait()
	defer func() {
		for _, v := range []*lightView{va, vb} {
			if v != nil {
				v.close()
			}
		}
	}()
	if err := errors.Join(erra, errb); err != nil {
		return nil, err
	}
	if err := checkKeyTypes(va, vb); err != nil {
		return nil, err
	}
	c := &Comparison{
		A:         Side{Ref: a, Completed: va.completed, Failed: va.failed},
		B:         Side{Ref: b, Completed: vb.completed, Failed: vb.failed},
		Tolerance: o.tolerance,
	}
	m := &merger{c: c, a: va, b: vb, o: o, fields: make(map[string]*FieldDiff),
		readA: newLineReaderOf(va.results)}
	if err := m.run(ctx); err != nil {
		return nil, err
	}
	if err := compareHistory(c); err != nil {
		return nil, err
	}
	return c, nil
}

func newLineReaderOf(j *journal) *lineReader {
	if j == nil || j.f == nil {
		return nil
	}
	return newLineReader(j)
}

// merger walks B's latest outcomes, looking each key up in A's index.
type merger struct {
	c      *Comparison
	a, b   *lightView
	o      compareOptions
	fields map[string]*FieldDiff
	readA  *lineReader // A's results, read at the offsets of B's keys
	cursor int64       // where in A's results the next key of B probably is

	matchedDone, matchedFailed int // A's keys found in B, by A's outcome
}

func (m *merger) run(ctx context.Context) error {
	if err := m.walkB(ctx, m.b.errors, false); err != nil {
		return err
	}
	if err := m.walkB(ctx, m.b.results, true); err != nil {
		return err
	}
	if err := m.onlyA(ctx); err != nil {
		return err
	}
	m.c.Fields = make([]FieldDiff, 0, len(m.fields))
	for _, f := range m.fields {
		m.c.Fields = append(m.c.Fields, *f)
	}
	slices.SortFunc(m.c.Fields, func(x, y FieldDiff) int {
		return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Field, y.Field))
	})
	return nil
}

// walkB handles every line of one of B's journals that is its key's latest
// outcome.
func (m *merger) walkB(ctx context.Context, j *journal, isResult bool) error {
	// Without superseded lines in this journal, every line is its key's
	// latest outcome: no need to look the keys up in B's index.
	allLatest := m.b.supersededErrors == 0
	if isResult {
		allLatest = m.b.supersededResults == 0
	}
	// Two runs over the same items usually save them in the same order.
	// When every line of A's results is its key's latest, the line after
	// the last one matched is tried first, read sequentially, before a
	// lookup in A's index: a hash lookup in a table far larger than the
	// caches costs a cache miss per key. While that works, A's table is
	// not touched ahead either.
	useCursor := isResult && m.readA != nil && m.a.supersededResults == 0
	inOrder := false // the last key was found at the cursor
	touch := func(hs []uint64) {
		if !inOrder {
			m.a.table.touch(hs)
		}
		if !allLatest {
			m.b.table.touch(hs)
		}
	}
	return scanAhead(ctx, j, m.b.table.hash, touch, func(p *pendingLine) error {
		if !allLatest {
			sb := m.b.lookup(p.canon, p.h)
			if sb == nil || sb.done() != isResult || sb.offset() != p.off {
				return nil // not this key's latest outcome
			}
		}
		var lineA []byte
		var recA record
		inA, doneA := false, false
		inOrder = false
		if useCursor && m.cursor < m.a.results.size {
			if l, err := m.readA.line(m.cursor); err == nil {
				if recA, inA = recordWithKey(l, p.canon); inA {
					lineA, doneA, inOrder = l, true, true
					m.cursor += int64(len(l)) + 1
				}
			}
		}
		if !inA {
			if sa := m.a.lookup(p.canon, p.h); sa != nil {
				var err error
				if sa.done() {
					lineA, err = m.readA.line(sa.offset())
				} else {
					lineA, err = m.a.errors.readLine(sa.offset())
				}
				if err != nil {
					return err
				}
				// Another key with the same hash is not a match.
				recA, inA = recordWithKey(lineA, p.canon)
				doneA = sa.done()
				if inA && doneA {
					m.cursor = sa.offset() + int64(len(lineA)) + 1
				}
			}
		}
		if !inA {
			m.c.OnlyB.add(string(p.canon), isResult, m.o.examples)
			return nil
		}
		if doneA {
			m.matchedDone++
		} else {
			m.matchedFailed++
		}
		m.c.Both++
		line := p.line
		switch {
		case doneA && isResult:
			m.compareResults(p.canon, recA.body, p.rec.body)
		case doneA:
			if m.c.FailedOnlyInB.count(m.o.examples) {
				m.c.FailedOnlyInB.add(OutcomeChange{Key: string(p.canon), ErrorB: errorMessage(line)})
			}
		case isResult:
			if m.c.FailedOnlyInA.count(m.o.examples) {
				m.c.FailedOnlyInA.add(OutcomeChange{Key: string(p.canon), ErrorA: errorMessage(lineA)})
			}
		default:
			if m.c.FailedInBoth.count(m.o.examples) {
				m.c.FailedInBoth.add(OutcomeChange{Key: string(p.canon), ErrorA: errorMessage(lineA), ErrorB: errorMessage(line)})
			}
		}
		return nil
	})
}

// errorMessage is the message of an errors line.
func errorMessage(line []byte) string {
	msg, _ := errorFields(line)
	return msg
}

func (k *KeySet) add(key string, completed bool, examples int) {
	k.Count++
	if completed {
		k.Completed++
	} else {
		k.Failed++
	}
	if len(k.Examples) < examples {
		k.Examples = append(k.Examples, key)
	}
}

// count counts one more key and reports whether it is to be an example.
func (o *Outcomes) count(examples int) bool {
	o.Count++
	return len(o.Examples) < examples
}

func (o *Outcomes) add(c OutcomeChange) { o.Examples = append(o.Examples, c) }

// onlyA counts A's keys that B did not have: those A has, less those
// matched. Its examples are the first in A's files (results, then errors)
// whose key is not in B, found by a scan that stops once it has them.
func (m *merger) onlyA(ctx context.Context) error {
	k := &m.c.OnlyA
	k.Completed = m.a.completed - m.matchedDone
	k.Failed = m.a.failed - m.matchedFailed
	k.Count = k.Completed + k.Failed
	if k.Count == 0 || m.o.examples == 0 {
		return nil
	}
	enough := errors.New("enough examples")
	for _, isResult := range []bool{true, false} {
		j := m.a.errors
		if isResult {
			j = m.a.results
		}
		err := scanRecords(ctx, j, func(off int64, _ int, _ []byte, rec record) error {
			canon, _, err := canonicalKey(nil, rec.key)
			if err != nil {
				return nil
			}
			h := m.a.table.hash(canon)
			if sa := m.a.lookup(canon, h); sa == nil || sa.done() != isResult || sa.offset() != off {
				return nil // not the key's latest outcome
			}
			if sb := m.b.lookup(canon, h); sb != nil {
				if in, err := m.b.keyIs(*sb, canon); err != nil || in {
					return err
				}
			}
			k.Examples = append(k.Examples, string(canon))
			if len(k.Examples) == m.o.examples {
				return enough
			}
			return nil
		})
		if errors.Is(err, enough) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// compareResults compares the results of a key completed in both.
func (m *merger) compareResults(canon, a, b []byte) {
	if bytes.Equal(a, b) {
		m.c.Equal++
		return
	}
	key := string(canon)
	va, erra := decodeJSON(a)
	vb, errb := decodeJSON(b)
	if erra != nil || errb != nil {
		// Not JSON we can read: compare the bytes.
		m.c.Different++
		if m.field("") {
			m.example("", ValueChange{Key: key, A: bytes.Clone(a), B: bytes.Clone(b)})
		}
		return
	}
	differs := false
	diffValues("", va, vb, true, true, m.o.tolerance, func(path string, x, y any, hasX, hasY bool) {
		differs = true
		if m.field(path) {
			m.example(path, ValueChange{Key: key, A: marshalIf(x, hasX), B: marshalIf(y, hasY)})
		}
	})
	if differs {
		m.c.Different++
	} else {
		m.c.Equal++
	}
}

// field counts one more key that differs at path, and reports whether it
// is to be an example.
func (m *merger) field(path string) bool {
	f := m.fields[path]
	if f == nil {
		f = &FieldDiff{Field: path}
		m.fields[path] = f
	}
	f.Count++
	return len(f.Examples) < m.o.examples
}

func (m *merger) example(path string, c ValueChange) {
	f := m.fields[path]
	f.Examples = append(f.Examples, c)
}

func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func marshalIf(v any, ok bool) json.RawMessage {
	if !ok {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// diffValues calls emit for every path at which a and b differ. Objects are
// compared field by field, down to leaves or arrays; an array differs as a
// whole. Numbers differ by more than tol.
func diffValues(path string, a, b any, hasA, hasB bool, tol float64, emit func(path string, a, b any, hasA, hasB bool)) {
	if !hasA || !hasB {
		emit(path, a, b, hasA, hasB)
		return
	}
	oa, okA := a.(map[string]any)
	ob, okB := b.(map[string]any)
	if okA && okB {
		for _, k := range unionNames(oa, ob) {
			x, hx := oa[k]
			y, hy := ob[k]
			diffValues(joinPath(path, k), x, y, hx, hy, tol, emit)
		}
		return
	}
	if !equalValues(a, b, tol) {
		emit(path, a, b, true, true)
	}
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// equalValues compares two decoded JSON values, numbers within tol.
func equalValues(a, b any, tol float64) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, err1 := x.Float64()
		fy, err2 := y.Float64()
		return err1 == nil && err2 == nil && math.Abs(fx-fy) <= tol
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, vx := range x {
			vy, ok := y[k]
			if !ok || !equalValues(vx, vy, tol) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValues(x[i], y[i], tol) {
				return false
			}
		}
		return true
	default: // string, bool, nil
		return a == b
	}
}

// compareHistory fills in the runs, parameters and metrics of both sides.
func compareHistory(c *Comparison) error {
	var err error
	var seriesA, seriesB map[string][]MetricPoint
	c.A.Run, err = latestRun(c.A.Dir, c.A.Name)
	if err != nil {
		return err
	}
	c.B.Run, err = latestRun(c.B.Dir, c.B.Name)
	if err != nil {
		return err
	}
	if seriesA, err = ReadMetrics(c.A.Dir, c.A.Name); err != nil {
		return err
	}
	if seriesB, err = ReadMetrics(c.B.Dir, c.B.Name); err != nil {
		return err
	}
	var pa, pb json.RawMessage
	if c.A.Run != nil {
		pa = c.A.Run.Params
	}
	if c.B.Run != nil {
		pb = c.B.Run.Params
	}
	c.Params = diffParams(pa, pb)
	c.Metrics = diffMetrics(latestMetrics(seriesA), latestMetrics(seriesB))
	return nil
}

// diffParams lists the parameters of two runs side by side: by name when
// both are JSON objects (or absent), as one unnamed value otherwise.
func diffParams(a, b json.RawMessage) []ParamDiff {
	oa, okA := paramFields(a)
	ob, okB := paramFields(b)
	if !okA || !okB {
		return []ParamDiff{{A: a, B: b, Differs: !sameJSON(a, b)}}
	}
	names := unionNames(oa, ob)
	out := make([]ParamDiff, 0, len(names))
	for _, k := range names {
		out = append(out, ParamDiff{Name: k, A: oa[k], B: ob[k], Differs: !sameJSON(oa[k], ob[k])})
	}
	return out
}

// unionNames returns the names in a or b, each once, sorted.
func unionNames[V any](a, b map[string]V) []string {
	names := make([]string, 0, len(a)+len(b))
	for k := range a {
		names = append(names, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// paramFields splits params into its fields; absent params have none.
func paramFields(p json.RawMessage) (map[string]json.RawMessage, bool) {
	if len(p) == 0 {
		return nil, true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(p, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	va, err1 := decodeJSON(a)
	vb, err2 := decodeJSON(b)
	if err1 != nil || err2 != nil {
		return bytes.Equal(a, b)
	}
	return equalValues(va, vb, 0)
}

func diffMetrics(a, b map[string]float64) []MetricDiff {
	names := unionNames(a, b)
	out := make([]MetricDiff, 0, len(names))
	for _, k := range names {
		d := MetricDiff{Name: k}
		if v, ok := a[k]; ok {
			d.A = &v
		}
		if v, ok := b[k]; ok {
			d.B = &v
		}
		if d.A != nil && d.B != nil {
			delta := *d.B - *d.A
			d.Delta = &delta
		}
		out = append(out, d)
	}
	return out
}

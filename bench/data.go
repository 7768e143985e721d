package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Record is the result every figure saves: a small struct, about 100 bytes
// of JSON.
type Record struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Score  float64  `json:"score"`
	Tags   []string `json:"tags"`
	Passed bool     `json:"passed"`
}

func newRecord(i int64) Record {
	return Record{
		ID:     i,
		Name:   "item-" + strconv.FormatInt(i, 10),
		Score:  float64(i%1000) / 8,
		Tags:   []string{"alpha", "beta"},
		Passed: i%3 != 0,
	}
}

func stringKey(i int64) string { return fmt.Sprintf("doc-%08d", i) }

// dataSet is a checkpoint folder holding a results file of n lines.
type dataSet struct {
	dir, name string
	n         int
	strings   bool // keys are stringKey(i), else i
}

func (d dataSet) path() string { return filepath.Join(d.dir, d.name+"_results.jsonl") }

// write generates the results file at buffered-write speed, in the format
// the library writes (the README's File format section): one compact JSON
// object per line, the key, the result, then a fixed-width timestamp. It is
// the same bytes SaveResult would write for newRecord(i), without paying for
// ten million saves.
func (d dataSet) write() error {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(d.path())
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 4<<20)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	var line []byte
	for i := range int64(d.n) {
		line = append(line[:0], `{"key":`...)
		if d.strings {
			line = strconv.AppendQuote(line, stringKey(i))
		} else {
			line = strconv.AppendInt(line, i, 10)
		}
		line = appendRecordJSON(append(line, `,"result":`...), newRecord(i))
		line = append(line, `,"timestamp":"`...)
		line = base.Add(time.Duration(i)*time.Microsecond).AppendFormat(line, "2006-01-02T15:04:05.000000-07:00")
		line = append(line, "\"}\n"...)
		if _, err := w.Write(line); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// appendRecordJSON is json.Marshal(r) for the values newRecord makes
// (checked against json.Marshal in main_test.go).
func appendRecordJSON(b []byte, r Record) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), r.ID, 10)
	b = strconv.AppendQuote(append(b, `,"name":`...), r.Name)
	b = strconv.AppendFloat(append(b, `,"score":`...), r.Score, 'f', -1, 64)
	b = append(b, `,"tags":[`...)
	for i, t := range r.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, t)
	}
	b = strconv.AppendBool(append(b, `],"passed":`...), r.Passed)
	return append(b, '}')
}

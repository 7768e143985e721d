package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"iter"

	"github.com/spf13/cobra"
)

// csvHeaderRows is how many results the CSV header is built from.
const csvHeaderRows = 1000

func newResultsCmd(e *env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "results NAME",
		Short: "Print the latest result of every completed key",
		Long: `results streams the latest result of every completed key, in the order they
were saved; memory does not grow with their number. Formats:

  jsonl  one {"key":…,"result":…} per line (the default)
  json   one JSON array of those objects
  csv    a column for the key, then one per field of a result that is a JSON
         object (the header comes from the first 1000 results; nested values
         are written as JSON text); other results go in a "result" column

It never takes the lock.`,
		Example: `  checkpoint results sample > sample.jsonl
  checkpoint results sample --format csv > sample.csv
  checkpoint results sample | jq -c 'select(.result.score > 0.2)'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "jsonl", "json", "csv":
			default:
				return usagef("--format %q: want jsonl, json or csv", format)
			}
			if e.db != "" {
				return e.resultsPostgres(cmd.Context(), args[0], format) // source_pg.go
			}
			v, err := e.inspect(args[0])
			if err != nil {
				return err
			}
			defer v.Close()
			w := bufio.NewWriterSize(e.stdout, 1<<20)
			switch format {
			case "csv":
				err = writeCSV(w, v.RawResults())
			default:
				err = writeJSONResults(w, v.RawResults(), format == "json")
			}
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			if err != nil {
				return err
			}
			return v.Err()
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl, json or csv")
	return cmd
}

// writeJSONResults writes the results as JSON Lines, or as one array. Keys
// and results are copied as written in the file, straight from the source's
// read buffer into w's: nothing is allocated or encoded per result. The
// slices results yields are valid for one turn of the loop only.
func writeJSONResults(w *bufio.Writer, results iter.Seq2[[]byte, []byte], array bool) error {
	sep, end := "", "}\n"
	if array {
		w.WriteString("[")
		end = "}"
	}
	for key, result := range results {
		if array {
			w.WriteString(sep)
			sep = ",\n"
		}
		w.WriteString(`{"key":`)
		w.Write(key)
		w.WriteString(`,"result":`)
		w.Write(result)
		if _, err := w.WriteString(end); err != nil {
			return err
		}
	}
	if array {
		w.WriteString("]\n")
	}
	return nil
}

type csvRow struct {
	key    string
	result json.RawMessage
}

// writeCSV flattens results that are objects into columns. The slices
// results yields are valid for one turn of the loop only.
func writeCSV(out io.Writer, results iter.Seq2[[]byte, []byte]) error {
	w := csv.NewWriter(out)
	var head []csvRow
	var columns []string
	index := map[string]int{}
	addColumns := func(r csvRow) {
		fields, ok := objectFields(r.result)
		if !ok {
			fields = []string{"result"}
		}
		for _, f := range fields {
			if _, seen := index[f]; !seen {
				index[f] = len(columns)
				columns = append(columns, f)
			}
		}
	}
	var missing []string
	rowNo := 0
	put := func(r csvRow) error {
		rowNo++
		rec := make([]string, 1+len(columns))
		rec[0] = keyShown(r.key)
		values, err := objectValues(r.result)
		if err != nil {
			return fmt.Errorf("result %d (key %s): %w", rowNo, rec[0], err)
		}
		for name, val := range values {
			i, ok := index[name]
			if !ok {
				if len(missing) < 10 {
					missing = append(missing, fmt.Sprintf("%q (result %d, key %s)", name, rowNo, rec[0]))
				}
				continue
			}
			rec[1+i] = cell(val)
		}
		return w.Write(rec)
	}
	flushHead := func() error {
		if err := w.Write(append([]string{"key"}, columns...)); err != nil {
			return err
		}
		for _, r := range head {
			if err := put(r); err != nil {
				return err
			}
		}
		head = nil
		return nil
	}
	headDone := false
	for key, result := range results {
		r := csvRow{string(key), result}
		if !headDone {
			r.result = bytes.Clone(result) // kept past this turn of the loop
			head = append(head, r)
			addColumns(r)
			if len(head) == csvHeaderRows {
				headDone = true
				if err := flushHead(); err != nil {
					return err
				}
			}
			continue
		}
		if err := put(r); err != nil {
			return err
		}
	}
	if !headDone && len(head) > 0 {
		if err := flushHead(); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("fields not in the CSV header (made from the first %d results) were left out: %v", csvHeaderRows, missing)
	}
	return nil
}

// objectFields lists a JSON object's field names in order; ok is false if
// raw is not an object.
func objectFields(raw json.RawMessage) ([]string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	var names []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return names, true
		}
		name, _ := t.(string)
		names = append(names, name)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return names, true
		}
	}
	return names, true
}

// objectValues returns a result's fields, or {"result": raw} if it is not
// an object.
func objectValues(raw json.RawMessage) (map[string]json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return map[string]json.RawMessage{"result": raw}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// cell is a JSON value as CSV text: strings unquoted, null empty, numbers
// and booleans as written, objects and arrays as JSON text.
func cell(val json.RawMessage) string {
	t := bytes.TrimSpace(val)
	switch {
	case len(t) == 0, string(t) == "null":
		return ""
	case t[0] == '"':
		var s string
		if json.Unmarshal(t, &s) == nil {
			return s
		}
	case t[0] == '{' || t[0] == '[':
		var c bytes.Buffer
		if json.Compact(&c, t) == nil {
			return c.String()
		}
	}
	return string(t)
}

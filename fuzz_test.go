package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The fuzz targets run their seed corpus (testdata/fuzz/<name>/ and the f.Add
// calls) as plain tests in every `go test`; fuzz one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzJournalLoad$' -fuzztime 5m .

// FuzzRecordLine: a line written by the library parses back to what was
// written, and no strict prefix of it, which a crash can leave, is taken for
// a record: neither by the mid-file rule (parseRecord and a balanced body)
// nor by the torn-tail rule (parseRecord and whole JSON).
func FuzzRecordLine(f *testing.F) {
	f.Add("k1", []byte(`{"n":1}`), "boom")
	f.Add("", []byte(`{"meta":{"timestamp":"x"},"data":{"a":{},"timestamp":"z"}}`), "")
	f.Add(`quo"te\back`, []byte(`"a string, \"timestamp\": \"x\"}"`), "multi\nline")
	f.Add("ü\u2028", []byte(`[1,[2,{"timestamp":"t"}]]`), `{"key":"x"}`)
	f.Add("k", []byte(`12345`), "\x00\xff")
	f.Fuzz(func(t *testing.T, key string, result []byte, msg string) {
		if len(key)+len(result)+len(msg) > 2048 {
			return // every prefix is tried: keep each input quick
		}
		if !json.Valid(result) {
			b, _ := json.Marshal(string(result))
			result = b
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, result); err != nil {
			t.Fatal(err)
		}
		result = compact.Bytes()
		codec, err := newKeyCodec[string]()
		if err != nil {
			t.Fatal(err)
		}
		kb, err := codec.encode(nil, key)
		if err != nil {
			return // not valid UTF-8: refused on save
		}
		ts := time.Date(2026, 11, 23, 13, 47, 51, 518145000, time.UTC)
		lines := [][]byte{
			appendResultLine(nil, kb, result, ts),
			appendErrorLine(nil, kb, msg, 3, ts),
		}
		for i, line := range lines {
			line = bytes.TrimSuffix(line, []byte{'\n'})
			rec, ok := parseRecord(line)
			if !ok || !balanced(rec.body) || !json.Valid(line) {
				t.Fatalf("line %d does not parse: %q", i, line)
			}
			k, err := codec.decode(rec.key)
			if err != nil || k != key {
				t.Fatalf("key %q came back as %q (%v)", key, k, err)
			}
			if got, ok := parseTimestamp(rec.ts); !ok || !got.Equal(ts) {
				t.Fatalf("timestamp %q", rec.ts)
			}
			if i == 0 && !bytes.Equal(rec.body, result) {
				t.Fatalf("result %q came back as %q", result, rec.body)
			}
			for cut := range len(line) {
				p := line[:cut]
				if rec, ok := parseRecord(p); ok && balanced(rec.body) {
					t.Fatalf("a line cut at %d of %d passes as a whole mid-file record: %q", cut, len(line), p)
				}
				if _, ok := parseRecord(p); ok && json.Valid(p) {
					t.Fatalf("a line cut at %d of %d passes as a whole last record: %q", cut, len(line), p)
				}
			}
		}
	})
}

// FuzzJournalLoad loads arbitrary bytes as a journal. It must not panic or
// hang; without WithSkipCorrupt it either loads or fails with ErrCorrupt;
// with it, it always loads. When it loads, the file is whole lines, the bytes
// before the repaired tail are unchanged or were set aside byte for byte, and
// loading again changes nothing.
func FuzzJournalLoad(f *testing.F) {
	f.Add([]byte(`{"key": "a", "result": 1, "timestamp": "2026-11-23T13:47:51"}` + "\n"))
	f.Add([]byte(`{"key":"a","result":1,"timestamp":"t"}` + "\n" + `{"key":"b","res`))
	f.Add([]byte("garbage\n" + `{"key":"a","result":1,"timestamp":"t"}` + "\n"))
	f.Add([]byte("\x00\x00\x00\x00\n\r\n  \n"))
	f.Add([]byte(`{"key":"a","result":{"x":{"timestamp":"t"}` + "\n" + `{"key":"b","result":2,"timestamp":"t"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, skip := range []bool{false, true} {
			path := filepath.Join(t.TempDir(), "j.jsonl")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			o := defaultOptions()
			o.skipCorrupt = skip
			o.logger = quietLogger()
			load := func() ([]int64, error) {
				j, err := openJournal(path, &o)
				if err != nil {
					t.Fatal(err)
				}
				defer j.f.Close()
				var offs []int64
				err = j.load(o.logger, func(off int64, rec record) error {
					offs = append(offs, off)
					return nil
				})
				if err == nil && j.size != fileLen(t, path) {
					t.Fatalf("size %d, file %d", j.size, fileLen(t, path))
				}
				return offs, err
			}
			offs, err := load()
			if err != nil {
				if skip || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Fatalf("skip=%v: %v", skip, err)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
					t.Fatal("a refused load changed the file")
				}
				continue
			}
			got, _ := os.ReadFile(path)
			if len(got) > 0 && got[len(got)-1] != '\n' {
				t.Fatalf("the file still ends in a torn line: %q", got)
			}
			// Each record's line is in the file at its offset.
			for _, off := range offs {
				end := bytes.IndexByte(got[off:], '\n')
				if _, ok := parseRecord(bytes.TrimSuffix(got[off:off+int64(end)], []byte{'\r'})); !ok {
					t.Fatalf("offset %d is not a record", off)
				}
			}
			// Nothing destroyed: every byte of the original is still in the
			// journal, blanked and kept in .corrupt, or cut and kept in .torn.
			side, _ := os.ReadFile(path + ".corrupt")
			torn, _ := os.ReadFile(path + ".torn")
			if len(got)+len(torn) < len(data) {
				t.Fatalf("%d bytes in, %d in the journal and %d in .torn", len(data), len(got), len(torn))
			}
			for i := range min(len(got), len(data)) {
				if got[i] != data[i] && got[i] != ' ' {
					t.Fatalf("byte %d changed from %q to %q", i, data[i], got[i])
				}
			}
			if blanked := bytes.Count(got, []byte{' '}) - bytes.Count(data[:min(len(got), len(data))], []byte{' '}); blanked > len(side) {
				t.Fatalf("%d bytes blanked, %d kept in .corrupt", blanked, len(side))
			}
			// Loading again changes nothing and finds the same records.
			offs2, err := load()
			if err != nil {
				t.Fatalf("second load: %v", err)
			}
			if again, _ := os.ReadFile(path); !bytes.Equal(again, got) {
				t.Fatal("a second load changed the file")
			}
			if len(offs2) != len(offs) {
				t.Fatalf("second load found %d records, first %d", len(offs2), len(offs))
			}
		}
	})
}

func fileLen(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// FuzzOpen opens a checkpoint whose results file is well-formed records with
// arbitrary bytes inserted among them and a torn tail. Open must not panic or
// hang; it fails with a clear error naming the file, or opens with every
// well-formed record intact; with WithSkipCorrupt it opens unless a key does
// not decode.
func FuzzOpen(f *testing.F) {
	f.Add("a,b,c", []byte("garbage"), uint8(1), []byte(`{"key":"d","res`), []byte(nil))
	f.Add("a,a,b", []byte("\x00\x00\x00"), uint8(2), []byte(nil), []byte(`{"key": "a", "error": "x", "timestamp": "2026-11-23T13:47:51"}`+"\n"))
	f.Add("x", []byte(`{"key":"x","result":{"v":{"timestamp":"t"}`), uint8(0), []byte("\n"), []byte("junk\n"))
	f.Add("k1,k2", []byte(`{"key": 5, "result": 1, "timestamp": "t"}`), uint8(1), []byte(nil), []byte(nil))
	f.Add("", []byte(""), uint8(0), []byte(`{"key":"z","result":1,"timestamp":"2026-11-23T13:47:51"}`), []byte(nil))
	f.Fuzz(func(t *testing.T, keys string, junk []byte, at uint8, tail, errorsFile []byte) {
		type line struct {
			key  string
			body string
			good bool
		}
		var lines []line
		for i, k := range strings.Split(keys, ",") {
			if i == 32 {
				break
			}
			body, _ := json.Marshal(map[string]any{"i": i, "k": k})
			lines = append(lines, line{k, string(body), true})
		}
		pos := int(at) % (len(lines) + 1)
		lines = append(lines[:pos], append([]line{{body: string(junk)}}, lines[pos:]...)...)
		var content bytes.Buffer
		for i, l := range lines {
			if !l.good {
				content.Write(junk)
				content.WriteByte('\n')
				continue
			}
			sep := ":"
			if i%2 == 0 {
				sep = ": " // Python's form
			}
			kj, _ := json.Marshal(l.key)
			content.WriteString(`{"key"` + sep + string(kj) + `,"result"` + sep + l.body + `,"timestamp"` + sep + `"2026-11-23T13:47:51.518145"}` + "\n")
		}
		content.Write(tail)

		for _, skip := range []bool{false, true} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "job_results.jsonl"), content.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "job_errors.jsonl"), errorsFile, 0o644); err != nil {
				t.Fatal(err)
			}
			opts := []Option{WithDir(dir), WithLogger(quietLogger())}
			if skip {
				opts = append(opts, WithSkipCorrupt())
			}
			r, err := Open[string, json.RawMessage]("job", opts...)
			if err != nil {
				msg := err.Error()
				if !strings.Contains(msg, "_results.jsonl") && !strings.Contains(msg, "_errors.jsonl") {
					t.Fatalf("the error does not name the file: %v", err)
				}
				if skip && errors.Is(err, ErrCorrupt) {
					t.Fatalf("WithSkipCorrupt: %v", err)
				}
				continue
			}
			// Every well-formed record is intact: a key's latest result,
			// unless other bytes mention the key (the junk, the tail or the
			// errors file could hold a newer outcome for it).
			latest := map[string]string{}
			for _, l := range lines {
				if l.good {
					latest[l.key] = l.body
				}
			}
			for k, body := range latest {
				if !utf8.ValidString(k) {
					continue // stored as U+FFFD: another key
				}
				kj, _ := json.Marshal(k)
				if bytes.Contains(junk, kj) || bytes.Contains(tail, kj) || bytes.Contains(errorsFile, kj) {
					continue
				}
				var got json.RawMessage
				found, err := r.Result(k, &got)
				if err != nil || !found || string(got) != body {
					t.Fatalf("key %q: found=%v err=%v result %s, want %s", k, found, err, got, body)
				}
			}
			done, _ := r.Progress()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopening changes nothing.
			before := readFiles(t, dir)
			r, err = Open[string, json.RawMessage]("job", WithDir(dir), WithLogger(quietLogger()))
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			done2, _ := r.Progress()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if done2 != done {
				t.Fatalf("completed %d, then %d after reopening", done, done2)
			}
			after := readFiles(t, dir)
			for name, b := range before {
				if !bytes.Equal(b, after[name]) {
					t.Fatalf("reopening changed %s", name)
				}
			}
		}
	})
}

func readFiles(t *testing.T, dir string) map[string][]byte {
	m := map[string][]byte{}
	for _, name := range []string{"job_results.jsonl", "job_errors.jsonl", "job_results.jsonl.torn",
		"job_errors.jsonl.torn", "job_results.jsonl.corrupt", "job_errors.jsonl.corrupt"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		m[name] = b
	}
	return m
}

// FuzzParseAgreesWithJSON: on every line that encoding/json accepts as an
// object with a "key" field, parseRecord (whichever of its paths reads the
// line) yields the key encoding/json yields, the last "key" field's value,
// and the last "timestamp" when it is a string.
func FuzzParseAgreesWithJSON(f *testing.F) {
	ts := `"2026-11-23T13:47:51.518145+00:00"`
	for _, s := range []string{
		`{"key":1,"result":2,"timestamp":` + ts + `}`,
		`{"key":1,"result":2,"key":7,"timestamp":` + ts + `}`,
		`{"key":1,"key":7,"timestamp":` + ts + `}`,
		`{"key": 1, "result": {"key": 3}, "key": "7", "timestamp": ` + ts + `}`,
		`{"key":1,"error":"e","attempt":2,"key":7,"timestamp":` + ts + `}`,
		`{"key":1,"result":2,"k\u0065y":7,"timestamp":` + ts + `}`,
		`{"key":1,"result":2,"KEY":7,"timestamp":` + ts + `}`,
		`{"key":1,"result":"a:b","timestamp":` + ts + `}`,
		`{"key":1,"result":2,"timestamp":"x","timestamp":` + ts + `}`,
		`{"result":2,"key":1,"timestamp":` + ts + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil || m["key"] == nil {
			return
		}
		rec, ok := parseRecord(line)
		if !ok {
			return // not a record (no timestamp field, say): nothing to agree on
		}
		if !bytes.Equal(rec.key, m["key"]) {
			t.Fatalf("key %q, encoding/json reads %q in %q", rec.key, m["key"], line)
		}
		// A timestamp is compared as text when it is one as written: with an
		// escape or invalid UTF-8 (which encoding/json replaces), it does not
		// parse as a time on either path.
		raw := m["timestamp"]
		var want string
		if json.Unmarshal(raw, &want) == nil && utf8.Valid(raw) && !bytes.ContainsRune(raw, '\\') && string(rec.ts) != want {
			t.Fatalf("timestamp %q, encoding/json reads %q in %q", rec.ts, want, line)
		}
	})
}

package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// journalLine is one line of a hand-written checkpoint: a result (err ""),
// or an error.
type journalLine struct {
	key, result, err string
}

// writeJournals writes the lines to name's journals in dir, stamped in
// order, so that every outcome is newer than the ones before it.
// It returns the text of each line, newline included.
func writeJournals(t *testing.T, dir, name string, lines []journalLine) []string {
	t.Helper()
	var res, errs strings.Builder
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	text := make([]string, len(lines))
	for i, l := range lines {
		stamp := ts.Add(time.Duration(i) * time.Millisecond).Format(tsLayout)
		if l.err == "" {
			text[i] = fmt.Sprintf(`{"key":%s,"result":%s,"timestamp":"%s"}`+"\n", l.key, l.result, stamp)
			res.WriteString(text[i])
		} else {
			text[i] = fmt.Sprintf(`{"key":%s,"error":%q,"attempt":1,"timestamp":"%s"}`+"\n", l.key, l.err, stamp)
			errs.WriteString(text[i])
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+"_results.jsonl"), []byte(res.String()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+"_errors.jsonl"), []byte(errs.String()), 0o644))
	return text
}

// viewState is what a View shows: its counts and its streams, in order.
type viewState struct {
	info     Info
	results  []string
	failures []string
}

func stateOfView(t *testing.T, v *View) viewState {
	t.Helper()
	s := viewState{info: v.Info()}
	s.info.Rate = 0
	for k, r := range v.Results() {
		s.results = append(s.results, KeyText(k)+"="+string(r))
	}
	for f := range v.Failures() {
		s.failures = append(s.failures, fmt.Sprintf("%s=%s/%d", KeyText(f.Key), f.Error, f.Attempts))
	}
	require.NoError(t, v.Err())
	return s
}

// The numeric index (keyIndex) must match keys exactly as the text index
// does: whichever Inspect picks, it shows what the text index shows.
func TestKeyIndexNumericAgreesWithText(t *testing.T) {
	r := func(key, result string) journalLine { return journalLine{key: key, result: result} }
	e := func(key, msg string) journalLine { return journalLine{key: key, err: msg} }
	cases := []struct {
		name    string
		lines   []journalLine
		numeric bool // the numeric index holds them
	}{
		{"go ints", []journalLine{r("1", "1"), r("2", "2"), r("-3", "3"), r("0", "0"), r("1", "10"), e("4", "no"), e("4", "no again"), e("2", "regressed")}, true},
		{"python quoted ints", []journalLine{r(`"1"`, "1"), r(`"2"`, "2"), e(`"3"`, "no"), r(`"1"`, "11")}, true},
		{"quoted and bare are one key", []journalLine{r("42", "1"), r(`"42"`, "2"), e(`"7"`, "no"), r("7", "7"), e("8", "no"), e(`"8"`, "again")}, true},
		{"escaped digits are the same key", []journalLine{r("42", "1"), r(`"\u0034\u0032"`, "2"), r("5", "5")}, true},
		{"int64 limits", []journalLine{r("9223372036854775807", "1"), r("-9223372036854775808", "2"), r(`"9223372036854775807"`, "3")}, true},
		{"leading zero is another key", []journalLine{r("42", "1"), r(`"042"`, "2"), r("43", "3")}, false},
		{"minus zero is another key", []journalLine{r("0", "1"), r(`"-0"`, "2"), r("1", "3")}, false},
		{"plus sign is another key", []journalLine{r("1", "1"), r(`"+1"`, "2"), r("2", "3")}, false},
		{"beyond int64 in the middle", []journalLine{r("1", "1"), r("9223372036854775808", "2"), r("2", "3")}, false},
		{"a float in the middle", []journalLine{r("1", "1"), r("1.0", "2"), r("1e0", "3"), r("2", "3")}, false},
		{"string keys", []journalLine{r(`"doc-1"`, "1"), r(`"doc-2"`, "2"), e(`"doc-1"`, "no")}, false},
		{"one string key at the end", []journalLine{r("1", "1"), r("2", "2"), r(`"x"`, "3")}, false},
		{"errors only", []journalLine{e("1", "a"), e("2", "b"), e("1", "c")}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeJournals(t, dir, "job", c.lines)
			auto, err := Inspect(dir, "job")
			require.NoError(t, err)
			defer auto.Close()
			text, err := inspect(dir, "job", true)
			require.NoError(t, err)
			defer text.Close()
			_, numeric := auto.ix.(*typedIndex[int64])
			require.Equal(t, c.numeric, numeric, "index kind")
			want := stateOfView(t, text)
			require.Equal(t, want, stateOfView(t, auto))

			// The editor picks the same way, and compacts to the same state.
			_, _, err = Compact(dir, "job")
			require.NoError(t, err)
			after, err := inspect(dir, "job", true)
			require.NoError(t, err)
			defer after.Close()
			got := stateOfView(t, after)
			require.Equal(t, want.results, got.results)
			require.Equal(t, want.failures, got.failures)
			require.Equal(t, want.info.Completed, got.info.Completed)
			require.Equal(t, want.info.Failed, got.info.Failed)
			require.Zero(t, got.info.Results.Superseded)
			require.Zero(t, got.info.Errors.Superseded)
		})
	}
}

// Forget matches keys by their text whichever index the editor built: "42"
// is 42 written either way, and "042" is not 42.
func TestForgetWithNumericIndex(t *testing.T) {
	dir := t.TempDir()
	writeJournals(t, dir, "job", []journalLine{{key: "42", result: "1"}, {key: `"42"`, result: "2"}, {key: "43", result: "3"}})
	_, err := Forget(dir, "job", "042")
	require.ErrorIs(t, err, ErrUnknownKey)
	n, err := Forget(dir, "job", "42")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b, err := os.ReadFile(filepath.Join(dir, "job_results.jsonl"))
	require.NoError(t, err)
	require.NotContains(t, string(b), "42")
	require.Contains(t, string(b), `{"key":43,`)
}

func TestCanonicalInt(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"7", 7, true}, {"-7", -7, true}, {"1234567890", 1234567890, true},
		{"9223372036854775807", 1<<63 - 1, true}, {"-9223372036854775808", -1 << 63, true},
		{"9223372036854775808", 0, false}, {"-9223372036854775809", 0, false},
		{"99999999999999999999", 0, false}, {"", 0, false}, {"-", 0, false}, {"-0", 0, false},
		{"00", 0, false}, {"01", 0, false}, {"+1", 0, false}, {"1.0", 0, false}, {"1e3", 0, false},
		{" 1", 0, false}, {"1 ", 0, false}, {"0x1", 0, false}, {"１", 0, false},
	}
	for _, c := range cases {
		got, ok := canonicalInt([]byte(c.in))
		require.Equal(t, c.ok, ok, "%q", c.in)
		if ok {
			require.Equal(t, c.want, got, "%q", c.in)
		}
	}
}

// RawResults reads each line's key and result as encoding/json would, on
// its fast path too: a result holding a "key" field, a second top-level
// "key" (the last wins), escapes.
func TestRawResultsReadLinesAsJSON(t *testing.T) {
	const ts = `"timestamp":"2026-01-02T03:04:05.000000+00:00"}`
	lines := []string{
		`{"key":1,"result":{"key":"inner","v":1},` + ts,
		`{"key":2,"result":5,"key":3,` + ts,
		`{"key":4,"result":"a \"quoted\" \\ text",` + ts,
		`{"key":5,"result":[1,{"key":2}],` + ts,
		`{"key": "6", "result": {"x": 1}, "timestamp": "2026-01-02T03:04:05"}`,
		`{"key":7,"result":{"k\u0065y":8},` + ts,
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "job_results.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	v, err := Inspect(dir, "job")
	require.NoError(t, err)
	defer v.Close()
	var got []string
	for k, r := range v.RawResults() {
		got = append(got, string(k)+" "+string(r))
	}
	require.NoError(t, v.Err())
	var want []string
	for _, l := range lines {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		want = append(want, string(m["key"])+" "+string(m["result"]))
	}
	require.Equal(t, want, got)
	var copies []string
	for k, r := range v.Results() {
		copies = append(copies, k+" "+string(r))
	}
	require.Equal(t, want, copies)
}

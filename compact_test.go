package checkpoint

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Compact keeps exactly, and in file order, each key's latest result (if
// its latest outcome is a result) and every error of a key whose latest
// outcome is an error, whatever the order the keys were saved in, and
// however long the lines.
func TestCompactKeepsLatestLinesInFileOrder(t *testing.T) {
	r := func(key, result string) journalLine { return journalLine{key: key, result: result} }
	e := func(key, msg string) journalLine { return journalLine{key: key, err: msg} }
	var reversed []journalLine
	for i := range 50 {
		reversed = append(reversed, r(fmt.Sprint(i), "0"))
	}
	for i := 49; i >= 0; i-- {
		reversed = append(reversed, r(fmt.Sprint(i), "1")) // latest offsets against the index's order
	}
	long := `"` + strings.Repeat("x", 5<<20) + `"` // longer than copyLines' read buffer
	cases := []struct {
		name  string
		lines []journalLine
	}{
		{"saved again in reverse order", reversed},
		{"interleaved", []journalLine{r("1", "1"), r("2", "2"), r("1", "3"), r("3", "4"), r("2", "5"), r("4", "6")}},
		{"lines longer than the buffer", []journalLine{r("1", long), r("2", "2"), r("1", "3"), r("3", long), r("4", long), r("2", long)}},
		{"results and errors", []journalLine{
			e("1", "flaky"), r("1", "1"), // the error goes
			r("2", "2"), e("2", "regressed"), e("2", "again"), // the result goes, both errors stay
			r("3", "3"), r("3", "4"), // the first goes
			e("4", "no"),               // stays
			r(`"5"`, "5"), r("5", "6"), // one key
		}},
		{"nothing superseded", []journalLine{r("1", "1"), r("2", "2"), e("3", "no")}},
		{"errors only superseded", []journalLine{e("1", "no"), r("1", "1"), r("2", "2")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			text := writeJournals(t, dir, "job", c.lines)
			// The model: a key's last line is its latest outcome.
			last := map[string]int{}
			for i, l := range c.lines {
				last[KeyText(l.key)] = i
			}
			var wantRes, wantErr strings.Builder
			for i, l := range c.lines {
				latestIsResult := c.lines[last[KeyText(l.key)]].err == ""
				switch {
				case l.err == "" && last[KeyText(l.key)] == i:
					wantRes.WriteString(text[i])
				case l.err != "" && !latestIsResult:
					wantErr.WriteString(text[i])
				}
			}
			before, after, err := Compact(dir, "job")
			require.NoError(t, err)
			res, err := os.ReadFile(filepath.Join(dir, "job_results.jsonl"))
			require.NoError(t, err)
			errs, err := os.ReadFile(filepath.Join(dir, "job_errors.jsonl"))
			require.NoError(t, err)
			require.Equal(t, wantRes.String(), string(res), "results")
			require.Equal(t, wantErr.String(), string(errs), "errors")
			require.Equal(t, int64(len(res)+len(errs)), after)
			require.GreaterOrEqual(t, before, after)
			checkNoTemps(t, dir)
		})
	}
}

func checkNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.False(t, strings.HasSuffix(e.Name(), rewriteSuffix) || strings.HasSuffix(e.Name(), ".renames"), e.Name())
	}
}

// onlyReaderAt hides a journal's *os.File, so that copyLines cannot copy
// it in the kernel and sends every kept byte through the process, as on
// systems without copy_file_range.
type onlyReaderAt struct{ appendFile }

// copyLines writes exactly the kept lines, in file order, whether they form
// long runs (copied in the kernel, cut every copyPieceMax bytes) or short
// ones (sent as bytes), with blank lines and dropped lines between them, a
// line longer than its read buffer, and a torn tail held after the last
// whole line; a kept offset with no whole line is an error. Each case runs
// with the kernel's copy and without it.
func TestCopyLinesRuns(t *testing.T) {
	line := func(i, width int) string {
		s := fmt.Sprintf(`{"key":%d,"result":"`, i)
		return s + strings.Repeat("r", max(0, width-len(s)-3)) + "\"}\n"
	}
	type journalCase struct {
		name    string
		lines   []string
		keep    func(i int) bool
		tail    string  // after the last whole line, outside j.size
		pastEnd []int64 // offsets kept after the whole lines (from their end): an error
	}
	// lines are n lines of the given width.
	lines := func(n, width int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = line(i, width)
		}
		return out
	}
	withBlanks := lines(3000, 100)
	for i := 0; i < len(withBlanks); i += 7 {
		withBlanks[i] = "   \n" // a repair's blank line: never kept
	}
	long := lines(5, 100)
	long[2] = line(2, 5<<20+123) // longer than the 4 MiB read buffer
	cases := []journalCase{
		{name: "one long run at the end (the benchmark's shape)", lines: lines(40000, 300), keep: func(i int) bool { return i >= 20000 }},
		{name: "every other line", lines: lines(5000, 80), keep: func(i int) bool { return i%2 == 1 }},
		{name: "runs of every length", lines: lines(20000, 150), keep: func(i int) bool { return (i/1000)%2 == 0 || i%3 == 0 }},
		{name: "short runs across read windows", lines: lines(100000, 100), keep: func(i int) bool { return i%20 < 9 }},
		{name: "runs longer than a piece", lines: lines(100000, 200), keep: func(i int) bool { return i != 50000 }},
		{name: "blank lines between kept lines", lines: withBlanks, keep: func(i int) bool { return withBlanks[i] != "   \n" }},
		{name: "a line longer than the buffer", lines: long, keep: func(i int) bool { return i >= 1 }},
		{name: "only the long line", lines: long, keep: func(i int) bool { return i == 2 }},
		{name: "torn tail held", lines: lines(1000, 120), keep: func(i int) bool { return i >= 10 }, tail: `{"key":1000,"res`},
		{name: "nothing kept", lines: lines(10, 50), keep: func(int) bool { return false }},
		{name: "the torn tail's offset kept", lines: lines(100, 120), keep: func(i int) bool { return i > 50 }, tail: `{"key":100,"res`, pastEnd: []int64{0}},
		{name: "an offset inside the torn tail kept", lines: lines(100, 120), keep: func(i int) bool { return i > 50 }, tail: `{"key":100,"res`, pastEnd: []int64{5}},
		{name: "an offset past the file kept", lines: lines(100, 120), keep: func(i int) bool { return i < 50 }, pastEnd: []int64{1 << 20}},
	}
	for _, c := range cases {
		var all, want strings.Builder
		var offs []int64
		for i, l := range c.lines {
			if c.keep(i) {
				offs = append(offs, int64(all.Len()))
				want.WriteString(l)
			}
			all.WriteString(l)
		}
		size := int64(all.Len())
		for _, off := range c.pastEnd {
			offs = append(offs, size+off)
		}
		all.WriteString(c.tail)
		for _, kernel := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/kernel=%v", c.name, kernel), func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "job_results.jsonl")
				require.NoError(t, os.WriteFile(path, []byte(all.String()), 0o644))
				f, err := os.Open(path)
				require.NoError(t, err)
				defer f.Close()
				j := &journal{path: path, f: f, size: size}
				if !kernel {
					j.f = onlyReaderAt{f}
				}
				// The index's order is not the file's: copyLines sorts.
				shuffled := slices.Clone(offs)
				rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
				tmp := path + rewriteSuffix
				n, dropped, err := writeTemp(j, tmp, copyLines(shuffled, len(c.lines)))
				if c.pastEnd != nil {
					require.ErrorIs(t, err, ErrCorrupt)
					return
				}
				require.NoError(t, err)
				got, err := os.ReadFile(tmp)
				require.NoError(t, err)
				require.True(t, want.String() == string(got), "new journal: %d bytes, want %d", len(got), want.Len())
				require.Equal(t, int64(want.Len()), n)
				require.Equal(t, len(c.lines)-len(offs), dropped)
			})
		}
	}
}

// A copy whose new file cannot be written fails, and its scanner stops.
func TestCopyLinesWriteFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job_results.jsonl")
	var all strings.Builder
	var offs []int64
	for i := range 200000 {
		offs = append(offs, int64(all.Len()))
		fmt.Fprintf(&all, `{"key":%d,"result":"%s"}`+"\n", i, strings.Repeat("x", 80))
	}
	require.NoError(t, os.WriteFile(path, []byte(all.String()), 0o644))
	for _, kernel := range []bool{true, false} {
		t.Run(fmt.Sprintf("kernel=%v", kernel), func(t *testing.T) {
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			j := &journal{path: path, f: f, size: int64(all.Len())}
			if !kernel {
				j.f = onlyReaderAt{f}
			}
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			require.NoError(t, err)
			require.NoError(t, out.Close()) // every write fails
			wb := &writebackFile{f: out}
			w := &tempWriter{Writer: bufio.NewWriterSize(wb, 1<<20), wb: wb}
			before := runtime.NumGoroutine()
			_, _, err = copyLines(offs, len(offs))(j, w)
			require.ErrorIs(t, err, os.ErrClosed)
			require.LessOrEqual(t, runtime.NumGoroutine(), before, "the scanner outlived the copy")
		})
	}
}

package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
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

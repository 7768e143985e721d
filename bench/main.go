// Command bench measures the checkpoint library against its performance
// targets and prints one table: each figure, its value, the reference
// measured in the same run, their ratio, the target and whether it is met,
// and the peak RSS of the process that measured it.
//
// Run it from this folder (it is a separate module, so the library's own
// go.mod stays small):
//
//	cd bench && go run .
//
// It generates its data sets (10 million lines, about 3.5 GB) in a
// temporary folder and removes them at the end; -data keeps them for the
// next run. Each group of figures runs in its own process, so that heap
// and RSS figures are not polluted by the others. -quick runs everything on
// sets ten times smaller, as a smoke test. The exit status is 1 if a
// target is missed.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

type config struct {
	N           int    // lines of the large data sets
	Small       int    // lines of the small ones, for the growth figures
	Save        int    // records per SaveResult round
	Compare     int    // items in the comparison with SQLite and bbolt
	CompareSync int    // items for the fsync-per-item modes
	JSONLines   int    // lines the encoding/json reference decodes
	Data        string // folder of the data sets
	Tmp         string // scratch folder for the figures
}

func main() {
	var c config
	var quick bool
	var child, only string
	flag.IntVar(&c.N, "n", 10_000_000, "lines of the large data sets")
	flag.IntVar(&c.Small, "small", 1_000_000, "lines of the small data sets (growth figures)")
	flag.IntVar(&c.Save, "save", 300_000, "records per SaveResult round")
	flag.IntVar(&c.Compare, "compare", 200_000, "items in the SQLite and bbolt comparison")
	flag.IntVar(&c.CompareSync, "compare-sync", 2_000, "items for the fsync-per-item modes")
	flag.IntVar(&c.JSONLines, "json-lines", 1_000_000, "lines decoded by the encoding/json reference")
	flag.StringVar(&c.Data, "data", "", "keep the data sets in this folder and reuse them (default: a temporary folder, removed)")
	flag.BoolVar(&quick, "quick", false, "data sets ten times smaller: a smoke test, not the figures")
	flag.StringVar(&only, "only", "", "run only these comma-separated groups of figures: "+strings.Join(groups, ", "))
	flag.StringVar(&child, "child", "", "internal: measure one group of figures and print them as JSON")
	flag.StringVar(&c.Tmp, "tmp", "", "internal: scratch folder")
	flag.Parse()

	if child != "" {
		rows, err := runChild(child, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", child+":", err)
			os.Exit(2)
		}
		if err := json.NewEncoder(os.Stdout).Encode(rows); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		return
	}
	if quick {
		c.N, c.Small, c.Save, c.Compare, c.CompareSync, c.JSONLines = c.N/10, c.Small/10, c.Save/6, c.Compare/10, c.CompareSync/4, c.JSONLines/5
	}
	if only != "" {
		var picked []string
		for _, g := range strings.Split(only, ",") {
			if !slices.Contains(groups, g) {
				fmt.Fprintf(os.Stderr, "bench: unknown group %q; groups: %s\n", g, strings.Join(groups, ", "))
				os.Exit(2)
			}
			picked = append(picked, g)
		}
		groups = picked
	}
	ok, err := run(c, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// groups are the child processes, in order. save-grown appends to the
// large int64 set, so it comes after every figure that reads it.
var groups = []string{"save-1", "save-8", "open-int", "open-string", "open-int-small", "open-string-small", "iterate", "allresults", "compare", "gc", "save-latency", "save-grown"}

func (c config) sets() (intBig, strBig, intSmall, strSmall dataSet) {
	return dataSet{c.Data, "ints", c.N, false}, dataSet{c.Data, "strings", c.N, true},
		dataSet{c.Data, "ints-small", c.Small, false}, dataSet{c.Data, "strings-small", c.Small, true}
}

func runChild(name string, c config) ([]row, error) {
	intBig, strBig, intSmall, strSmall := c.sets()
	switch name {
	case "save-1":
		return figureSave(c.Tmp, c.Save, 1)
	case "save-8":
		return figureSave(c.Tmp, c.Save, 8)
	case "open-int":
		return figureOpen(intBig, c.JSONLines, true)
	case "open-string":
		return figureOpen(strBig, c.JSONLines, true)
	case "open-int-small":
		return figureOpen(intSmall, 0, false)
	case "open-string-small":
		return figureOpen(strSmall, 0, false)
	case "iterate":
		return figureIterate(intBig)
	case "allresults":
		return figureAllResults(intBig, intSmall)
	case "compare":
		return figureCompare(c.Tmp, c.Compare, c.CompareSync)
	case "gc":
		return figureGC(c.Tmp, intBig, strBig, c.N/10)
	case "save-latency":
		return figureSaveLatency(c.Tmp, 2*c.N)
	case "save-grown":
		return figureSaveGrown(c.Tmp, intBig, c.Save)
	}
	return nil, fmt.Errorf("unknown group %q", name)
}

func run(c config, out io.Writer) (bool, error) {
	start := time.Now()
	load := loadAverage()
	tmp, err := os.MkdirTemp("", "checkpoint-bench-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	c.Tmp = filepath.Join(tmp, "scratch")
	keep := c.Data != ""
	if !keep {
		c.Data = filepath.Join(tmp, "data")
	}
	intBig, strBig, intSmall, strSmall := c.sets()
	for _, d := range []dataSet{intBig, strBig, intSmall, strSmall} {
		// A kept set is reused only if it is complete; save-grown appends
		// to the large int64 one, so it is rewritten every run.
		if keep && d.name != intBig.name && exists(d.path()) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: writing %s (%s lines)\n", d.path(), sizeLabel(d.n))
		if err := d.write(); err != nil {
			return false, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	var rows []row
	for _, g := range groups {
		fmt.Fprintf(os.Stderr, "bench: %s\n", g)
		if err := os.RemoveAll(c.Tmp); err != nil {
			return false, err
		}
		if err := os.MkdirAll(c.Tmp, 0o755); err != nil {
			return false, err
		}
		got, err := runGroup(self, g, c)
		if err != nil {
			return false, err
		}
		rows = append(rows, got...)
	}
	rows = append(rows, growthRows(rows)...)
	printTable(out, rows, c, time.Since(start), load)
	for _, r := range rows {
		if r.Target != "" && !r.Pass {
			return false, nil
		}
	}
	return true, nil
}

func runGroup(self, group string, c config) ([]row, error) {
	cmd := exec.Command(self, "-child", group,
		"-n", fmt.Sprint(c.N), "-small", fmt.Sprint(c.Small), "-save", fmt.Sprint(c.Save),
		"-compare", fmt.Sprint(c.Compare), "-compare-sync", fmt.Sprint(c.CompareSync),
		"-json-lines", fmt.Sprint(c.JSONLines), "-data", c.Data, "-tmp", c.Tmp)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w", group, err)
	}
	var rows []row
	if err := json.Unmarshal(stdout.Bytes(), &rows); err != nil {
		return nil, fmt.Errorf("%s: %w", group, err)
	}
	rss := peakRSS(cmd.ProcessState)
	for i := range rows {
		rows[i].Group = group
		if rows[i].PeakRSS == 0 { // the child did not measure a narrower peak
			rows[i].PeakRSS = rss
		}
	}
	return rows, nil
}

// growthRows is target 5: Open's time and heap per key at the large size
// against the small one, from the rows of the open groups.
func growthRows(rows []row) []row {
	find := func(group, prefix string) (row, bool) {
		for _, r := range rows {
			if r.Group == group && strings.HasPrefix(r.Figure, prefix) {
				return r, true
			}
		}
		return row{}, false
	}
	var out []row
	for _, kind := range []string{"int", "string"} {
		big, ok1 := find("open-"+kind, "Open,")
		small, ok2 := find("open-"+kind+"-small", "Open,")
		if !ok1 || !ok2 {
			continue
		}
		perBig, perSmall := 1e9/big.Value, 1e9/small.Value
		out = append(out, row{
			Figure: fmt.Sprintf("Open time per line, %s keys, large vs small set", kindName(kind)), Value: perBig, Unit: "ns/line",
			RefLabel: "small set", Ref: perSmall, Ratio: perBig / perSmall, Target: "≤ 1.5×", Pass: perBig/perSmall <= 1.5,
			Note: "linear growth: the cost per line stays flat from the small set to the large one (10× the keys)",
		})
		hb, ok1 := find("open-"+kind, "Memory after Open")
		hs, ok2 := find("open-"+kind+"-small", "Memory after Open")
		if ok1 && ok2 {
			out = append(out, row{
				Figure: fmt.Sprintf("Memory per key after Open, %s keys, large vs small set", kindName(kind)), Value: hb.Value, Unit: "B/key",
				RefLabel: "small set", Ref: hs.Value, Ratio: hb.Value / hs.Value, Target: "≤ 1.5×", Pass: hb.Value/hs.Value <= 1.5,
			})
		}
	}
	return out
}

func kindName(k string) string {
	if k == "int" {
		return "int64"
	}
	return k
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func printTable(w io.Writer, rows []row, c config, took time.Duration, load string) {
	fmt.Fprintf(w, "Machine: %d cores (GOMAXPROCS %d), %s, %s/%s, %s. Load average at start: %s. Run took %s.\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load, took.Round(time.Second))
	fmt.Fprintf(w, "Sets: %s and %s lines (int64 and string keys), read once before each timed figure (page cache); SaveResult rounds of %s records (best of 3); comparison on %s items.\n\n",
		sizeLabel(c.N), sizeLabel(c.Small), sizeLabel(c.Save), sizeLabel(c.Compare))
	fmt.Fprintln(w, "| Figure | Value | Same-run reference | Ratio | Target | Result | Peak RSS |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	met, targets := 0, 0
	var notes []string
	for _, r := range rows {
		ref, ratio := "—", "—"
		if r.RefLabel != "" {
			ref = r.RefLabel + ": " + formatValue(r.Ref, r.Unit)
		}
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", r.Ratio)
		}
		target, result := "—", "info"
		if r.Target != "" {
			target, result = r.Target, "FAIL"
			targets++
			if r.Pass {
				result = "pass"
				met++
			}
		}
		fig := r.Figure
		if r.Note != "" {
			notes = append(notes, r.Note)
			fig += fmt.Sprintf(" [%d]", len(notes))
		}
		rss := "—"
		if r.PeakRSS > 0 {
			rss = formatBytes(float64(r.PeakRSS))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", fig, formatValue(r.Value, r.Unit), ref, ratio, target, result, rss)
	}
	fmt.Fprintf(w, "\n%d of %d targets met. Peak RSS: high-water mark of the process that measured the row; for the Open rows, at the end of the first Open, before its references ran.\n", met, targets)
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for i, n := range notes {
			fmt.Fprintf(w, "[%d] %s\n", i+1, n)
		}
	}
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "bytes":
		return formatBytes(v)
	case "B/key":
		return fmt.Sprintf("%.1f B/key", v)
	case "ns/line":
		return fmt.Sprintf("%.0f ns/line", v)
	case "ms":
		return fmt.Sprintf("%.3f ms", v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	}
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM %s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk %s", v/1e3, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func formatBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

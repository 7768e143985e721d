package checkpoint

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	crashKills = flag.Int("crash.kills", 200, "SIGKILLs in TestCrashKill9; raise it for a long soak")
	crashSeed  = flag.Uint64("crash.seed", 0, "seed for TestCrashKill9's choices (0: from the clock)")
	crashRace  = flag.Bool("crash.race", false, "build the crash program with -race too (slower)")
)

// buildCrashProg builds internal/crashprog, the job that the crash tests run
// and kill. It is built without -race unless -crash.race is given: the race
// detector would only slow it, and the library runs under -race in the
// other tests.
func buildCrashProg(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "crashprog")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if *crashRace {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, "./internal/crashprog")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build the crash program: %s", out)
	return bin
}

// crashProc is one run of the crash program, with its reports.
type crashProc struct {
	cmd    *exec.Cmd
	events chan string // report lines; closed when the program has gone
	stderr *tailBuffer
}

func startCrashProg(t *testing.T, bin string, args ...string) *crashProc {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	p := &crashProc{cmd: exec.Command(bin, args...), events: make(chan string, 4096), stderr: &tailBuffer{max: 8 << 10}}
	p.cmd.ExtraFiles = []*os.File{pw} // fd 3 in the program
	p.cmd.Stderr = p.stderr
	err = p.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		require.NoError(t, err)
	}
	go func() {
		defer close(p.events)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.events <- sc.Text()
		}
	}()
	return p
}

// kill sends SIGKILL and reaps the process.
func (p *crashProc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = w.b[len(w.b)-w.max:]
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

type crashStats struct {
	kills, jobsDone, verified               int
	savedChecked, redoChecked, linesChecked int
	tornSeen                                int
	inRepair, inClear, inMeta               int
	byMode                                  map[string]int
	progTime, checkTime                     time.Duration
}

// crashHarness runs one job after another under random SIGKILLs and keeps
// what the program reported, to check against the files.
type crashHarness struct {
	t     *testing.T
	bin   string
	root  string
	rng   *rand.Rand
	items int

	job   int
	dir   string
	run   int
	saved map[string]string          // key -> sha256 of its result, reported saved since the last Clear
	maybe map[string]map[string]bool // saved before a Clear that a kill may have cut short
	// returned holds, per key, the results the work function made since the
	// last verify: a result found on disk that was not reported saved (a
	// kill came before the report, or Process saved it) must be one of them.
	returned map[string]map[string]bool

	checked map[string]checkedLines // per journal, the lines known to parse

	repairTime time.Duration // how long Open takes to repair the torn tail we plant
	stats      crashStats
}

const crashName = "job"

// TestCrashKill9 kills the crash program with SIGKILL at random moments,
// restarts it, and after every kill checks the four invariants:
//
//  1. every key reported as saved is completed after reopening, with the
//     exact result that was saved;
//  2. no key reported as saved is ever handed to the work function again;
//  3. every file parses line by line after Open, and reopening twice changes
//     nothing;
//  4. at the end of each job every item is completed exactly once (one line
//     per key in the results file), and Progress equals the input size.
//
// Some runs are aimed at Open's repair of a large torn tail, at Clear, and at
// the meta file's rewrite.
func TestCrashKill9(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("needs SIGKILL and flock")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -crash.seed=%d)", seed, seed)
	h := &crashHarness{
		t:          t,
		bin:        buildCrashProg(t),
		root:       t.TempDir(),
		rng:        rand.New(rand.NewPCG(seed, 0)),
		items:      3000,
		repairTime: 30 * time.Millisecond,
		stats:      crashStats{byMode: map[string]int{}},
	}
	h.newJob()
	start := time.Now()
	for h.stats.kills < *crashKills && !t.Failed() {
		h.cycle(h.pickKind())
	}
	// Make sure each targeted moment was hit at least once.
	for _, kind := range []string{"repair", "clear", "meta"} {
		for try := 0; try < 100 && h.hits(kind) == 0 && !t.Failed(); try++ {
			h.cycle(kind)
		}
		require.NotZero(t, h.hits(kind), "no kill landed inside %s", kind)
	}
	// Finish the job under way, so invariant 4 is checked at least once.
	for h.stats.jobsDone == 0 && !t.Failed() {
		h.cycle("finish")
	}
	s := h.stats
	t.Logf("time spent running the program %v, checking %v", s.progTime.Round(time.Millisecond), s.checkTime.Round(time.Millisecond))
	t.Logf("%d kills in %v (%v): %d verified reopenings, %d jobs of %d items finished; "+
		"checked %d saved keys, %d work hand-outs, %d lines; %d torn tails seen; "+
		"kills inside Open's repair %d, inside Clear %d, inside the meta rewrite %d",
		s.kills, time.Since(start).Round(time.Millisecond), s.byMode, s.verified, s.jobsDone, h.items,
		s.savedChecked, s.redoChecked, s.linesChecked, s.tornSeen, s.inRepair, s.inClear, s.inMeta)
}

func (h *crashHarness) hits(kind string) int {
	switch kind {
	case "repair":
		return h.stats.inRepair
	case "clear":
		return h.stats.inClear
	case "meta":
		return h.stats.inMeta
	}
	return 0
}

func (h *crashHarness) pickKind() string {
	switch x := h.rng.IntN(100); {
	case x < 28:
		return "iterate"
	case x < 52:
		return "concurrent"
	case x < 76:
		return "process"
	case x < 84:
		return "repair"
	case x < 92:
		return "meta"
	default:
		return "clear"
	}
}

func (h *crashHarness) newJob() {
	if h.dir != "" {
		require.NoError(h.t, os.RemoveAll(h.dir))
	}
	h.job++
	h.dir = filepath.Join(h.root, fmt.Sprintf("job%d", h.job))
	h.saved = map[string]string{}
	h.maybe = map[string]map[string]bool{}
	h.returned = map[string]map[string]bool{}
	h.checked = map[string]checkedLines{}
}

func (h *crashHarness) path(suffix string) string {
	return filepath.Join(h.dir, crashName+suffix)
}

// cycle runs the program once and kills it, unless it finishes first.
func (h *crashHarness) cycle(kind string) {
	t := h.t
	h.run++
	mode := kind
	args := []string{"-dir", h.dir, "-name", crashName, "-items", fmt.Sprint(h.items),
		"-run", fmt.Sprint(h.run), "-fail", "25", "-pad", fmt.Sprint(32 << 10)}
	policy := []string{"none", "none", "always", "interval"}[h.rng.IntN(4)]
	trigger := "" // the report that starts the countdown to the kill
	delay := time.Duration(h.rng.Int64N(int64(60 * time.Millisecond)))
	switch kind {
	case "concurrent", "process":
		args = append(args, "-workers", fmt.Sprint(2+h.rng.IntN(15)))
	case "repair":
		mode = "iterate"
		h.plantTornTail()
		trigger = "opening"
		delay = time.Duration(h.rng.Int64N(int64(h.repairTime)))
	case "clear":
		mode = "iterate"
		args = append(args, "-clear", fmt.Sprint(1+h.rng.IntN(40)))
		trigger = "clearing"
		delay = time.Duration(h.rng.Int64N(int64(time.Millisecond)))
	case "meta":
		delay = 2*time.Millisecond + time.Duration(h.rng.Int64N(int64(30*time.Millisecond)))
	case "finish":
		mode = "concurrent"
		policy = "none"
		delay = time.Minute
	}
	args = append(args, "-mode", mode, "-sync", policy)

	t0 := time.Now()
	p := startCrashProg(t, h.bin, args...)
	var events []string
	var timer <-chan time.Time
	if trigger == "" {
		timer = time.After(delay)
	}
	var opened time.Time
	exited := false
wait:
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				exited = true
				break wait
			}
			events = append(events, ev)
			if ev == trigger {
				timer = time.After(delay)
			}
			if kind == "repair" && ev == "opening" {
				opened = time.Now()
			}
			if kind == "repair" && ev == "opened" && !opened.IsZero() {
				// Aim later kills at the span Open really takes.
				h.repairTime = max(time.Since(opened)*3/2, time.Millisecond)
			}
		case <-timer:
			break wait
		}
	}
	if exited {
		err := p.cmd.Wait()
		require.NoError(t, err, "the crash program failed; events %q; stderr:\n%s", lastN(events, 5), p.stderr)
		require.Equal(t, []string{"done"}, lastN(events, 1), "stderr:\n%s", p.stderr)
	} else {
		p.kill()
		for ev := range p.events { // what it reported before dying
			events = append(events, ev)
		}
		h.stats.kills++
		h.stats.byMode[kind]++
	}
	for _, ev := range events {
		if strings.HasPrefix(ev, "error ") {
			t.Fatalf("the crash program reported %q; stderr:\n%s", ev, p.stderr)
		}
	}
	h.stats.progTime += time.Since(t0)
	t0 = time.Now()
	defer func() { h.stats.checkTime += time.Since(t0) }()
	h.apply(events)
	if !exited {
		h.noteWhere(kind, events)
	}
	h.checkRaw(kind != "repair")

	switch {
	case exited && kind != "meta":
		h.verify()
		h.checkJobDone()
		h.stats.jobsDone++
		h.newJob()
	case h.rng.IntN(2) == 0:
		// Else the program's own Open repairs what the kill left.
		h.verify()
	}
}

// apply replays the program's reports and checks invariant 2 as it goes.
func (h *crashHarness) apply(events []string) {
	for _, ev := range events {
		f := strings.Fields(ev)
		switch f[0] {
		case "work":
			h.stats.redoChecked++
			if _, ok := h.saved[f[1]]; ok {
				h.t.Errorf("invariant 2: %s was reported saved, and is handed to the work function again (run %d)", f[1], h.run)
			}
			// Redone after an interrupted Clear: it may now hold a result
			// whose report a kill cut off.
			delete(h.maybe, f[1])
		case "saved":
			h.saved[f[1]] = f[2]
			delete(h.maybe, f[1])
		case "result":
			if h.returned[f[1]] == nil {
				h.returned[f[1]] = map[string]bool{}
			}
			h.returned[f[1]][f[2]] = true
		case "clearing":
			// Until "cleared", these may or may not have been deleted.
			add := func(k, sum string) {
				if h.maybe[k] == nil {
					h.maybe[k] = map[string]bool{}
				}
				h.maybe[k][sum] = true
			}
			for k, sum := range h.saved {
				add(k, sum)
			}
			for k, sums := range h.returned {
				for sum := range sums {
					add(k, sum)
				}
			}
			h.saved, h.returned = map[string]string{}, map[string]map[string]bool{}
		case "cleared":
			h.maybe = map[string]map[string]bool{}
		}
	}
}

// noteWhere counts the kills that landed inside the targeted operations.
func (h *crashHarness) noteWhere(kind string, events []string) {
	has := func(s string) bool { return slicesContains(events, s) }
	switch kind {
	case "repair":
		if has("opening") && !has("opened") {
			h.stats.inRepair++
		}
	case "clear":
		if has("clearing") && !has("cleared") {
			h.stats.inClear++
		}
	case "meta":
		if tmps, _ := filepath.Glob(h.path("_meta.json.tmp-*")); len(tmps) > 0 {
			h.stats.inMeta++
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// plantTornTail appends a large record cut short to the results file, as a
// kill in the middle of writing it would leave, so that Open's repair has
// megabytes to save aside and the next kill can land inside it.
func (h *crashHarness) plantTornTail() {
	require.NoError(h.t, os.MkdirAll(h.dir, 0o755))
	f, err := os.OpenFile(h.path("_results.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	require.NoError(h.t, err)
	defer f.Close()
	tail := append([]byte(`{"key":"k99999","result":{"pad":"`), bytes.Repeat([]byte{'z'}, (1+h.rng.IntN(8))<<20)...)
	_, err = f.Write(tail)
	require.NoError(h.t, err)
}

// checkRaw looks at the files as the kill left them, before any repair: all
// but a torn last line parse, and the meta file is complete if it exists.
func (h *crashHarness) checkRaw(countTorn bool) {
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl"} {
		b, err := os.ReadFile(h.path(suffix))
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(h.t, err)
		end := bytes.LastIndexByte(b, '\n') + 1
		if end < len(b) && countTorn {
			h.stats.tornSeen++
		}
		h.checkLines(suffix, b[:end])
	}
	b, err := os.ReadFile(h.path("_meta.json"))
	if os.IsNotExist(err) {
		return
	}
	require.NoError(h.t, err)
	checkMetaFile(h.t, b)
}

// checkLines checks that every line of b, the complete lines of a journal,
// is a JSON record with a key, and returns the keys in order. Lines checked
// before are not parsed again while the file only grew: under -race,
// decoding megabytes of JSON after every kill would dominate the test.
func (h *crashHarness) checkLines(name string, b []byte) []string {
	c := h.checked[name]
	if !bytes.HasPrefix(b, c.content) {
		c = checkedLines{}
	}
	rest := b[len(c.content):]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		var rec struct {
			Key       *string         `json:"key"`
			Result    json.RawMessage `json:"result"`
			Error     *string         `json:"error"`
			Timestamp string          `json:"timestamp"`
		}
		h.stats.linesChecked++
		if err := json.Unmarshal(line, &rec); err != nil || rec.Key == nil || rec.Timestamp == "" ||
			(rec.Result == nil) == (rec.Error == nil) {
			h.t.Errorf("invariant 3: %s line %d is not a record (%v): %.80q", name, len(c.keys)+1, err, line)
			return nil
		}
		c.keys = append(c.keys, *rec.Key)
	}
	c.content = b
	h.checked[name] = c
	return c.keys
}

type checkedLines struct {
	content []byte
	keys    []string
}

// checkMetaFile checks that a meta file is whole: exactly the fields the
// Python library accepts, all present.
func checkMetaFile(t *testing.T, b []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m), "meta file is not whole JSON: %q", b)
	want := []string{"experiment_name", "started_at", "last_updated", "total_items",
		"completed_items", "failed_items", "schema_version"}
	require.Len(t, m, len(want), "meta fields: %q", b)
	for _, f := range want {
		require.Contains(t, m, f)
	}
}

func (h *crashHarness) open() *Runner[string, int] {
	r, err := Open[string, int](crashName, WithDir(h.dir), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(h.t, err)
	return r
}

// verify reopens the checkpoint and checks invariants 1 and 3.
func (h *crashHarness) verify() {
	t := h.t
	h.stats.verified++
	r := h.open()
	got := map[string]string{}
	for k, raw := range r.AllResults() {
		if _, dup := got[k]; dup {
			t.Errorf("AllResults yields %s twice", k)
		}
		sum := sha256.Sum256(raw)
		got[k] = hex.EncodeToString(sum[:])
	}
	require.NoError(t, r.Err())
	for k, sum := range h.saved {
		h.stats.savedChecked++
		if g, ok := got[k]; !ok {
			t.Errorf("invariant 1: %s was reported saved and is not completed after reopening (run %d)", k, h.run)
		} else if g != sum {
			t.Errorf("invariant 1: %s was reported saved with result %s, reopening finds %s", k, sum[:12], g[:12])
		}
	}
	for k, sums := range h.maybe {
		if g, ok := got[k]; ok && !sums[g] {
			t.Errorf("%s, saved before an interrupted Clear, came back with a result never saved", k)
		}
	}
	for k, g := range got {
		_, saved := h.saved[k]
		_, maybe := h.maybe[k]
		if !saved && !maybe && !h.returned[k][g] {
			t.Errorf("invariant 1: %s holds a result that the work function never made (run %d)", k, h.run)
		}
	}
	// What is on disk now is saved, reported or not (a kill can fall between
	// SaveResult's return and the report): it must not be redone either.
	h.saved, h.maybe, h.returned = got, map[string]map[string]bool{}, map[string]map[string]bool{}
	require.NoError(t, r.Close())

	// Invariant 3: after Open, every line of every file is a record, there is
	// no torn tail and no temporary file; reopening twice changes nothing.
	first := h.snapshot()
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl"} {
		b := first[suffix]
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("invariant 3: %s still ends in a torn line after Open", suffix)
		}
		h.checkLines(suffix, b)
	}
	tmps, _ := filepath.Glob(h.path("_meta.json.tmp-*"))
	require.Empty(t, tmps, "Open left temporary meta files")
	for range 2 {
		r := h.open()
		require.NoError(t, r.Close())
		again := h.snapshot()
		for name, b := range first {
			if !bytes.Equal(b, again[name]) {
				t.Errorf("invariant 3: reopening changed %s", name)
			}
		}
	}
}

// snapshot returns the data files' contents; for the meta file, its counts.
func (h *crashHarness) snapshot() map[string][]byte {
	s := map[string][]byte{}
	for _, suffix := range []string{"_results.jsonl", "_errors.jsonl", "_results.jsonl.torn", "_errors.jsonl.torn"} {
		b, err := os.ReadFile(h.path(suffix))
		if err != nil && !os.IsNotExist(err) {
			require.NoError(h.t, err)
		}
		s[suffix] = b
	}
	m, err := readMeta(h.path("_meta.json"))
	require.NoError(h.t, err)
	s["_meta.json counts"] = fmt.Appendf(nil, "%d %d %d", m.TotalItems, m.CompletedItems, m.FailedItems)
	return s
}

// checkJobDone checks invariant 4 after the program finished a job.
func (h *crashHarness) checkJobDone() {
	t := h.t
	require.Len(t, h.saved, h.items, "completed keys at the end of a job")
	for i := range h.items {
		if _, ok := h.saved[fmt.Sprintf("k%05d", i)]; !ok {
			t.Fatalf("invariant 4: item %d is not completed at the end of the job", i)
		}
	}
	b, err := os.ReadFile(h.path("_results.jsonl"))
	require.NoError(t, err)
	lines := map[string]int{}
	for _, k := range h.checkLines("_results.jsonl", b) {
		lines[k]++
	}
	for k, n := range lines {
		if n != 1 {
			t.Errorf("invariant 4: %s has %d lines in the results file: it was done more than once", k, n)
		}
	}
	r := h.open()
	defer r.Close()
	done, total := r.Progress()
	require.Equal(t, [2]int{h.items, h.items}, [2]int{done, total}, "invariant 4: Progress")
	require.Empty(t, r.AllErrors(), "keys that finally succeeded are not errors")
}

func lastN(s []string, n int) []string {
	return s[max(0, len(s)-n):]
}

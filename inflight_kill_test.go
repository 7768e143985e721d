package checkpoint

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	killChildDir  = "CHECKPOINT_INFLIGHT_KILL_DIR"
	killChildMode = "CHECKPOINT_INFLIGHT_KILL_MODE" // backend,loop
)

// killKey is item i's key: every third one is longer than a page.
func killKey(i int) string {
	k := fmt.Sprintf("k%04d", i)
	if i%3 == 0 {
		k += strings.Repeat("-", 2*flightPage)
	}
	return k
}

// TestInFlightKill9Child is the child half of TestInFlightKill9; it does
// nothing unless started by it. It runs a tracked loop (Iterate or
// IterateWithProgress, the slot file mapped or written with WriteAt) over
// string keys, a third of them longer than a page, and reports on stdout,
// one write per line: "crashed ID" for each key Open found in flight,
// "start ID" when the body begins, "saved ID" when SaveResult returned,
// "done" at the end.
func TestInFlightKill9Child(t *testing.T) {
	dir := os.Getenv(killChildDir)
	if dir == "" {
		return
	}
	backend, loop, _ := strings.Cut(os.Getenv(killChildMode), ",")
	opts := []Option{WithDir(dir), flQuiet(), WithInFlightIterate(), WithMaxCrashes(0), WithProgressWriter(io.Discard)}
	if backend == "writeat" {
		opts = append(opts, withoutMmap())
	}
	r, err := OpenBatch[string, int]("job", opts...)
	require.NoError(t, err)
	say := func(format string, args ...any) { os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n") }
	for _, c := range r.Crashed() {
		say("crashed %s", c.Key[:5])
	}
	const n = 300
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	// Even items work before saving, odd ones after: a kill lands as often
	// after the save as before it, while the key is still in its slot.
	body := func(i int) {
		say("start %s", killKey(i)[:5])
		if i%2 == 0 {
			time.Sleep(200 * time.Microsecond)
		}
		require.NoError(t, r.SaveResult(killKey(i), i))
		say("saved %s", killKey(i)[:5])
		if i%2 == 1 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	if loop == "progress" {
		for _, i := range r.IterateWithProgress(items, killKey, "") {
			body(i)
		}
	} else {
		for i := range r.Iterate(items, killKey) {
			body(i)
		}
	}
	require.NoError(t, r.Err())
	require.NoError(t, r.Close())
	say("done")
}

// The kill -9 harness for the slot file, on both backends and both tracked
// loops, with keys longer than a page: the child is killed at random moments
// (after a random number of items started or saved), before or after the
// save of the item in flight. After each kill the slot file shows the key whose body was
// running; the next run never blames a key reported saved (whose slot may
// still be set), and every key saved stays saved; in the end every item is
// complete.
func TestInFlightKill9(t *testing.T) {
	for _, backend := range []string{"mmap", "writeat"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 2))
			saved := map[string]bool{}
			kills, blamed, afterSave := 0, 0, 0
			for run := 1; ; run++ {
				require.Less(t, run, 60)
				loop := []string{"iterate", "progress"}[run%2]
				killAfter, killOn := 0, []string{"start ", "saved "}[rng.IntN(2)]
				if kills < 16 {
					killAfter = 1 + rng.IntN(40)
				}
				lines, killed := killChildRun(t, dir, backend+","+loop, killOn, killAfter)
				started := map[string]bool{}
				for _, l := range lines {
					what, id, _ := strings.Cut(l, " ")
					switch what {
					case "crashed":
						blamed++
						assert.False(t, saved[id], "run %d (%s): %s was saved, yet blamed", run, loop, id)
					case "start":
						started[id] = true
					case "saved":
						require.True(t, started[id])
						saved[id] = true
					}
				}
				if !killed {
					require.Contains(t, lines, "done", "run %d", run)
					break
				}
				kills++
				if strings.HasPrefix(lines[len(lines)-1], "saved ") {
					afterSave++ // the next run must not blame it (checked above)
				}
				// The body that was running at the kill is in the slot file.
				if last := lines[len(lines)-1]; strings.HasPrefix(last, "start ") {
					st, err := ReadInFlight(dir, "job")
					require.NoError(t, err)
					var ids []string
					for _, k := range st.InFlight {
						ids = append(ids, string(k[1:6]))
					}
					assert.Contains(t, ids, last[6:], "run %d (%s)", run, loop)
				}
			}
			t.Logf("%d kills, %d keys blamed, %d kills after a save", kills, blamed, afterSave)
			assert.Positive(t, blamed, "kills land while a body runs: some key must have been found in flight")
			assert.Positive(t, afterSave, "half the bodies save first: some kill must land after a save")
			r, err := Open[string, int]("job", WithDir(dir), flQuiet())
			require.NoError(t, err)
			defer r.Close()
			for i := range 300 {
				var v int
				found, err := r.Result(killKey(i), &v)
				require.NoError(t, err)
				require.True(t, found, "item %d", i)
				assert.Equal(t, i, v)
			}
			assert.Empty(t, r.AllErrors())
		})
	}
}

// killChildRun runs the child; killAfter > 0 kills it once it has reported
// that many lines starting with killOn. It returns its lines and whether it
// was killed.
func killChildRun(t *testing.T, dir, mode, killOn string, killAfter int) ([]string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInFlightKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildDir+"="+dir, killChildMode+"="+mode)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	var lines []string
	seen, killed := 0, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "crashed ") || strings.HasPrefix(l, "start ") ||
			strings.HasPrefix(l, "saved ") || l == "done" {
			lines = append(lines, l)
		}
		if strings.HasPrefix(l, killOn) {
			seen++
			if seen == killAfter {
				require.NoError(t, cmd.Process.Kill())
				killed = true
			}
		}
	}
	err = cmd.Wait()
	if !killed {
		require.NoError(t, err, "stderr: %s", stderr.String())
	}
	return lines, killed && !slices.Contains(lines, "done")
}

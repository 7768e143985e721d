package checkpoint

import (
	"bufio"
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
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var editKills = flag.Int("edit.kills", 15, "SIGKILLs per operation in TestEditKill9")

// TestEditKill9 kills Compact, Retry, Forget and Reset with SIGKILL (on
// Windows, TerminateProcess) at
// random moments, in a child process, and checks after each kill that the
// checkpoint holds either the state before the call or the state after it,
// as seen by Inspect (which resolves an unfinished batch without the lock)
// and by Open (which finishes it), and that Open leaves no temporary file.
func TestEditKill9(t *testing.T) {
	bin := buildEditProg(t)
	pristine := t.TempDir()
	forget := writeEditFixture(t, pristine)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	for _, op := range []string{"compact", "retry", "forget", "reset"} {
		t.Run(op, func(t *testing.T) {
			args := []string{"-name", "job", "-op", op, "-keys", strings.Join(forget, ",")}
			before, beforeFiles := stateOf(t, pristine), journalsOf(pristine)
			// The state after: one run to the end, timed.
			want := copyDir(t, pristine)
			dur := runEditProg(t, bin, want, args, -1, false)
			after, afterFiles := stateOf(t, want), journalsOf(want)
			require.NotEqual(t, beforeFiles, afterFiles, "the operation changes no file: the test would prove nothing")
			t.Logf("%s takes %v", op, dur)

			// At least editKills kills; more, up to four times as many, while
			// some outcome has not been seen yet: on a loaded machine the
			// timing of one call varies widely, and the test must show each.
			var old, new, marked, kills int
			for i := 0; i < *editKills || (i < 4**editKills && (old == 0 || new == 0 || marked == 0)); i++ {
				kills++
				work := copyDir(t, pristine)
				// Every third kill waits for the commit marker to appear
				// and lands at once or within 100µs: on a quiet machine with
				// a fast folder fsync the marker lives for well under a
				// millisecond (a batch of two renames), which kills spread
				// over the whole call, or even over 2 ms, seldom hit. Such a
				// kill hits it 20-75% of the time, so once the old and the
				// new state have been seen, every kill aims at the marker.
				atMarker := i%3 == 0 || (old > 0 && new > 0 && marked == 0)
				delay := time.Duration(rng.Int64N(int64(dur*6/5) + 1))
				if atMarker {
					delay = time.Duration(rng.Int64N(int64(100 * time.Microsecond)))
				}
				runEditProg(t, bin, work, args, delay, atMarker)
				if _, err := os.Stat(markerPath(work, "job")); err == nil {
					marked++
				}
				seen := viewStateOf(t, work)
				got := stateOf(t, work) // Open: finishes or undoes
				if !equalState(seen, got) {
					t.Fatalf("Inspect and Open disagree after a kill (work dir %s)", work)
				}
				files := journalsOf(work)
				switch {
				case equalState(got, before) && files == beforeFiles:
					old++
				case equalState(got, after) && files == afterFiles:
					new++
				default:
					t.Fatalf("after a kill the checkpoint is neither the old nor the new one (work dir %s)", work)
				}
				checkNoLeftovers(t, work)
				checkLinesFrom(t, pristine, work)
			}
			t.Logf("%s: %d kills: %d left the old state, %d the new, %d with the commit marker present", op, kills, old, new, marked)
			require.Positive(t, old, "no kill landed before the commit")
			require.Positive(t, new, "no kill landed after the commit")
			require.Positive(t, marked, "no kill landed between the commit and its end")
		})
	}
}

func buildEditProg(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "editprog")
	out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", bin, "./internal/editprog").CombinedOutput()
	require.NoError(t, err, "build the edit program: %s", out)
	return bin
}

// runEditProg runs the program on dir and kills it delay after it said
// "start" (or, with atMarker, after the commit marker appeared), or lets it
// finish if delay < 0. It returns how long the call took.
func runEditProg(t *testing.T, bin, dir string, args []string, delay time.Duration, atMarker bool) time.Duration {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-dir", dir}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr.String())
	require.Equal(t, "start\n", line)
	start := time.Now()
	if delay >= 0 {
		var ended chan struct{}
		if atMarker {
			// Poll until the marker appears, or until the call is over
			// (its "done" line, or the end of its output) and it never will.
			ended = make(chan struct{})
			go func() {
				defer close(ended)
				rd.ReadString('\n')
			}()
			marker := markerPath(dir, "job")
		poll:
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if _, err := os.Stat(marker); err == nil {
					break
				}
				select {
				case <-ended:
					break poll
				default:
				}
			}
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		if ended != nil {
			<-ended // the reader's goroutine is done with rd
		}
		io.Copy(io.Discard, rd)
		_ = cmd.Wait()
		return 0
	}
	line, _ = rd.ReadString('\n')
	dur := time.Since(start)
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr.String())
	require.Equal(t, "done\n", line)
	return dur
}

// writeEditFixture writes a checkpoint with superseded results, failures
// that later succeeded, results that later failed and keys that failed
// several times, with records large enough that the calls take a while. It
// returns keys to forget.
func writeEditFixture(t *testing.T, dir string) []string {
	t.Helper()
	r, err := Open[int, string]("job", WithDir(dir), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	pad := strings.Repeat("x", 300)
	var forget []string
	for i := range 3000 {
		res := map[string]any{"i": i, "pad": pad}
		switch i % 6 {
		case 0: // superseded result
			require.NoError(t, r.SaveResult(i, res))
			require.NoError(t, r.SaveResult(i, map[string]any{"i": i, "again": true}))
		case 1: // failed twice
			require.NoError(t, r.SaveError(i, fmt.Errorf("boom %d", i)))
			require.NoError(t, r.SaveError(i, fmt.Errorf("boom %d again", i)))
		case 2: // failed, then succeeded
			require.NoError(t, r.SaveError(i, fmt.Errorf("flaky %d", i)))
			require.NoError(t, r.SaveResult(i, res))
		case 3: // succeeded, then failed
			require.NoError(t, r.SaveResult(i, res))
			require.NoError(t, r.SaveError(i, fmt.Errorf("regressed %d", i)))
		default:
			require.NoError(t, r.SaveResult(i, res))
		}
		if i%7 == 0 {
			forget = append(forget, fmt.Sprint(i))
		}
	}
	require.NoError(t, r.Close())
	return forget
}

// editState is a checkpoint's state: per key, its latest outcome.
type editState map[string]string

func equalState(a, b editState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// stateOf opens the checkpoint (finishing an interrupted change) and reads
// its state. A checkpoint that is gone (reset) has the empty state.
func stateOf(t *testing.T, dir string) editState {
	t.Helper()
	r, err := Open[string, json.RawMessage]("job", WithDir(dir), WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	defer r.Close()
	s := editState{}
	for k, v := range r.AllResults() {
		s[k] = "result " + string(v)
	}
	for _, f := range r.AllErrors() {
		s[f.Key] = fmt.Sprintf("error %q attempts %d", f.Error, f.Attempts)
	}
	require.NoError(t, r.Err())
	return s
}

// viewStateOf reads the state through Inspect, without the lock.
func viewStateOf(t *testing.T, dir string) editState {
	t.Helper()
	s := editState{}
	v, err := Inspect(dir, "job")
	if err != nil {
		require.ErrorIs(t, err, ErrNoCheckpoint)
		return s
	}
	defer v.Close()
	for k, res := range v.Results() {
		s[KeyText(k)] = "result " + string(res)
	}
	for f := range v.Failures() {
		s[KeyText(f.Key)] = fmt.Sprintf("error %q attempts %d", f.Error, f.Attempts)
	}
	require.NoError(t, v.Err())
	return s
}

// journalsOf returns the content of both journals, as one string.
func journalsOf(dir string) string {
	var b strings.Builder
	for _, f := range []string{"job_results.jsonl", "job_errors.jsonl"} {
		c, _ := os.ReadFile(filepath.Join(dir, f))
		b.WriteString(f + ":\n")
		b.Write(c)
	}
	return b.String()
}

// checkNoLeftovers: after Open, no marker and no temporary file remain.
func checkNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, rewriteSuffix) || strings.HasSuffix(n, ".renames") || strings.Contains(n, ".renames.tmp-") {
			t.Fatalf("left after Open: %s", n)
		}
	}
}

// checkLinesFrom: every line of the journals is a line of the original
// files, byte for byte (the Python library reads them as before).
func checkLinesFrom(t *testing.T, pristine, dir string) {
	t.Helper()
	orig := map[string]bool{}
	for _, f := range []string{"job_results.jsonl", "job_errors.jsonl"} {
		b, err := os.ReadFile(filepath.Join(pristine, f))
		require.NoError(t, err)
		for _, l := range strings.SplitAfter(string(b), "\n") {
			orig[l] = true
		}
	}
	for _, f := range []string{"job_results.jsonl", "job_errors.jsonl"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		for _, l := range strings.SplitAfter(string(b), "\n") {
			require.True(t, orig[l], "%s has a line that was not in the original: %.80q", f, l)
		}
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, n), b, 0o644))
	}
	return dst
}

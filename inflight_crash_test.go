package checkpoint

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func buildInflightProg(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "inflightprog")
	out, err := exec.Command(goTool, "build", "-buildvcs=false", "-o", bin, "./internal/inflightprog").CombinedOutput()
	require.NoError(t, err, "build: %s", out)
	return bin
}

// inflightRun starts the program; kill, if positive, SIGKILLs it after that
// long. It returns its report lines and whether it was killed by a signal.
func inflightRun(t *testing.T, bin string, kill time.Duration, args ...string) (lines []string, killed bool) {
	t.Helper()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{pw}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	pw.Close()
	got := make(chan []string)
	go func() {
		var ls []string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ls = append(ls, sc.Text())
		}
		pr.Close()
		got <- ls
	}()
	if kill > 0 {
		timer := time.AfterFunc(kill, func() { cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err = cmd.Wait()
	lines = <-got
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return lines, true
		}
	}
	require.NoError(t, err, "stderr: %s", stderr.String())
	return lines, false
}

// One item kills its process every time it runs. The job finishes after
// WithMaxCrashes (3) + 1 runs, with every other item done and that one
// failed; items in flight beside it at the crashes are not blamed.
func TestInFlightPoisonItemKill9(t *testing.T) {
	bin := buildInflightProg(t)
	dir := t.TempDir()
	const n, poison = 200, 77
	args := []string{"-dir", dir, "-n", strconv.Itoa(n), "-poison", strconv.Itoa(poison), "-workers", "8", "-delay", "1ms"}
	runs := 0
	for {
		runs++
		require.LessOrEqual(t, runs, 10, "a crash loop")
		lines, killed := inflightRun(t, bin, 0, args...)
		if runs > 1 {
			assert.Contains(t, lines, "crashed fetch 77", "run %d reports the key in flight at the crash", runs)
		}
		if !killed {
			assert.Contains(t, lines, "done")
			break
		}
	}
	assert.Equal(t, 4, runs, "three crashes, then a run that gives the item up and finishes")

	p, err := OpenPipeline[int]("job", WithDir(dir), flQuiet())
	require.NoError(t, err)
	defer p.Close()
	fetch, err := PipelineStep[int, int](p, "fetch")
	require.NoError(t, err)
	errs := fetch.AllErrors()
	require.Len(t, errs, 1, "only the poisonous item failed")
	assert.Equal(t, poison, errs[0].Key)
	assert.Equal(t, "in flight at 3 crashes (the process died: OOM, segfault or kill)", errs[0].Error)
	sum, err := p.Summary()
	require.NoError(t, err)
	assert.Equal(t, []StepSummary{
		{Step: "fetch", Completed: n - 1, Failed: 1, Total: n},
		{Step: "score", Completed: n - 1, Total: n - 1},
	}, sum)
	st, err := ReadInFlight(dir, "job.fetch")
	require.NoError(t, err)
	require.Len(t, st.Crashes, 1, "bystanders were forgiven")
	assert.Equal(t, 3, st.Crashes[0].Crashes)
	assert.True(t, st.Crashes[0].GaveUp)
}

// The kill -9 harness on a pipeline: the job is killed at random moments in
// either step. After every kill, the next run finds every score it reported
// saved, and reports in flight only keys that did not finish; in the end
// both steps are complete with the right values.
func TestPipelineKill9(t *testing.T) {
	bin := buildInflightProg(t)
	dir := t.TempDir()
	const n = 400
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	args := []string{"-dir", dir, "-n", strconv.Itoa(n), "-workers", "8", "-delay", "200us"}
	saved := map[string]bool{}
	kills := 0
	for run := 1; ; run++ {
		require.Less(t, run, 200)
		kill := time.Duration(0)
		if kills < 25 {
			kill = time.Duration(10+rng.IntN(60)) * time.Millisecond
		}
		lines, killed := inflightRun(t, bin, kill, args...)
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) == 3 && f[0] == "saved":
				saved[f[2]] = true
			case len(f) == 3 && f[0] == "crashed" && f[1] == "score":
				assert.False(t, saved[f[2]], "run %d: score %s was saved, yet reported in flight at the crash", run, f[2])
			}
		}
		if killed {
			kills++
			continue
		}
		if slices.Contains(lines, "done") {
			break
		}
	}
	t.Logf("%d kills", kills)
	p, err := OpenPipeline[int]("job", WithDir(dir), flQuiet())
	require.NoError(t, err)
	defer p.Close()
	score, err := PipelineStep[int, int](p, "score")
	require.NoError(t, err)
	for k := range saved {
		i, _ := strconv.Atoi(k)
		assert.True(t, score.IsCompleted(i), "a saved score was lost: %d", i)
	}
	for i := range n {
		var v int
		found, err := score.Result(i, &v)
		require.NoError(t, err)
		require.True(t, found, "item %d", i)
		assert.Equal(t, i*10+1, v)
	}
	assert.Empty(t, score.AllErrors())
}
